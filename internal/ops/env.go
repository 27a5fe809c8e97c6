package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Dest is one configured destination as the operator tools see it.
type Dest struct {
	Name   string
	Type   string
	Feeds  []string
	Config *fleet.DestinationConfig
	Dest   workers.Destination
}

// Replace reports whether the destination replaces units (else it appends).
func (d *Dest) Replace() bool { return d.Dest.Semantics() == workers.Replace }

// Serves reports whether the destination consumes feed.
func (d *Dest) Serves(feed string) bool {
	for _, f := range d.Feeds {
		if f == feed {
			return true
		}
	}
	return false
}

// Env is a connection to the fleet's NATS and its configured destinations.
type Env struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Dests []*Dest
	// Sources is the config's source binding (sources:); when set, a
	// replay is signed by SigningKey, an operator's replay key listed under
	// sources.uf-replay (see ReplaySigning).
	Sources    messages.SourceKeys
	SigningKey nkeys.KeyPair
}

// Dest returns the destination called name, or nil.
func (e *Env) Dest(name string) *Dest {
	for _, d := range e.Dests {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// BuildDests builds the destinations of a validated configuration (again:
// fleet keeps its own unexported).
func BuildDests(cfg *fleet.Config) ([]*Dest, error) {
	var out []*Dest
	for i := range cfg.Destinations {
		dc := &cfg.Destinations[i]
		factory, ok := workers.Lookup(dc.Type)
		if !ok {
			return nil, fmt.Errorf("destinations[%d](%s).type: %q is not a destination type", i, dc.Name, dc.Type)
		}
		d, err := factory(dc.Name, &dc.Settings, fmt.Sprintf("destinations[%d](%s).settings", i, dc.Name))
		if err != nil {
			return nil, err
		}
		out = append(out, &Dest{Name: dc.Name, Type: dc.Type, Feeds: dc.Feeds, Config: dc, Dest: d})
	}
	return out, nil
}

// Open connects to the fleet's NATS as cfg says. A worker configured with
// the embedded server (no nats.url) is reached on 127.0.0.1:nats.port,
// which must then be set: a random port cannot be found from outside.
func Open(ctx context.Context, cfg *fleet.Config) (*Env, error) {
	dests, err := BuildDests(cfg)
	if err != nil {
		return nil, err
	}
	var nc *nats.Conn
	if cfg.NATS.URL == "" {
		if cfg.NATS.Port == 0 {
			return nil, errors.New("nats: the config uses the embedded server on a random port: set nats.url, or nats.port so that the worker's embedded server can be reached")
		}
		nc, err = nats.Connect("nats://127.0.0.1:"+strconv.Itoa(cfg.NATS.Port), nats.Name("usage-worker ops"))
	} else {
		nc, err = broker.Connect(ctx, cfg.NATS, "usage-worker ops")
	}
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Env{NC: nc, JS: js, Dests: dests, Sources: cfg.Sources}, nil
}

// NewEnv is an Env on a connection the caller owns (the worker's own, for
// its scheduled reconciliation): Close does not close it.
func NewEnv(nc *nats.Conn, cfg *fleet.Config) (*Env, error) {
	dests, err := BuildDests(cfg)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Env{JS: js, Dests: dests, Sources: cfg.Sources}, nil
}

// Names are the destinations' names.
func (e *Env) Names() []string {
	out := make([]string, len(e.Dests))
	for i, d := range e.Dests {
		out[i] = d.Name
	}
	return out
}

// Close closes the connection.
func (e *Env) Close() {
	if e.NC != nil {
		e.NC.Close()
	}
}
