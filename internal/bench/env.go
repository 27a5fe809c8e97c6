package bench

import (
	"context"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// env is what the runs share: the server, the bench's connection, the
// worker's link (through the delay proxy with --delay).
type env struct {
	server    string
	nc        *nats.Conn
	js        jetstream.JetStream
	workerURL string
	linkRTTMS float64
	serverCPU func() float64 // a spawned server's CPU seconds; nil otherwise
	published bool
	closers   []func()
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// setUp starts or joins the server, makes the streams, starts the proxy.
func setUp(ctx context.Context, o Options) (_ *env, err error) {
	e := &env{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	url := o.NATSURL
	switch {
	case url != "":
		e.server = "--nats " + redactURL(url)
	case o.SpawnNATS:
		s, err := spawnNATS(ctx, o.NATSServer)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, s.Close)
		url, e.server, e.serverCPU = s.URL, "spawned", s.cpuSeconds
		o.say("nats-server in its own process: %s, %s, at %s", s.Binary, s.Version, s.URL)
	default:
		dir, err := os.MkdirTemp("", "usagefleet-bench-")
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
		emb, err := broker.StartEmbedded(dir, 0)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, emb.Close)
		url, e.server = emb.URL, "embedded"
	}
	if e.nc, err = nats.Connect(url, nats.Name("usage-bench"), nats.MaxReconnects(-1)); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.nc.Close)
	e.js, _ = jetstream.New(e.nc)
	if err := broker.EnsureStreams(ctx, e.js, broker.StreamOptions{LeaseTTL: config.Duration(broker.DefaultLeaseTTL)}); err != nil {
		return nil, err
	}
	e.workerURL = url
	if o.Delay > 0 {
		p, err := startDelayProxy(e.nc.ConnectedAddr(), o.Delay)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { p.Close() })
		// The same URL (its user info too) with the proxy for its host.
		u, err := neturl.Parse(e.nc.ConnectedUrl())
		if err != nil {
			return nil, err
		}
		u.Host = p.Addr()
		e.workerURL = u.String()
	}
	if e.linkRTTMS, err = linkRTT(e.workerURL); err != nil {
		return nil, err
	}
	if o.Delay > 0 {
		o.say("worker link: through a delay proxy, %v each way; a NATS round trip over it takes %.2f ms", o.Delay, e.linkRTTMS)
	}
	return e, nil
}

// redactURL drops the user info (a password, a token) of a NATS URL, for
// printing.
func redactURL(s string) string {
	var out []string
	for _, one := range strings.Split(s, ",") {
		if u, err := neturl.Parse(strings.TrimSpace(one)); err == nil && u.User != nil {
			u.User = nil
			one = u.String()
		}
		out = append(out, one)
	}
	return strings.Join(out, ",")
}

// linkRTT is the median of 9 NATS round trips over url, in ms.
func linkRTT(url string) (float64, error) {
	nc, err := nats.Connect(url, nats.Name("usage-bench-rtt"))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var rtts []float64
	for range 9 {
		d, err := nc.RTT()
		if err != nil {
			return 0, err
		}
		rtts = append(rtts, float64(d)/float64(time.Millisecond))
	}
	return medianOf(rtts), nil
}

// purge removes the bench feed's parts, so a run publishes into nothing.
func (e *env) purge(ctx context.Context) error {
	s, err := e.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(feedSubjects))
}

// backlog counts the bench feed's parts in the stream.
func (e *env) backlog(ctx context.Context) (int, error) {
	s, err := e.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(feedSubjects))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}
