// Package serve runs the sandbox emulators, each on its own loopback
// listener, for `usage-sandbox`, the demo and the bench (`usagefleet`).
package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/internal/sandbox/webhook"
)

// Emulator names.
const (
	Webhook      = "webhook"
	CloudZero    = "cloudzero"
	CloudCruiser = "cloudcruiser"
	Acronis      = "acronis"
	HERE         = "here"
)

// Names lists the emulators Start can serve.
func Names() []string { return []string{Acronis, CloudCruiser, CloudZero, HERE, Webhook} }

// Options say what to serve where.
type Options struct {
	Host         string            // default 127.0.0.1; must be a loopback address
	Ports        map[string]int    // per emulator; 0 or absent = a random port
	Faults       map[string]string // per emulator, fault.ParseSpec syntax
	Only         []string          // serve only these (default: all)
	Webhook      webhook.Config
	CloudZero    cloudzero.Config
	CloudCruiser cloudcruiser.Config
	Acronis      acronis.Config
	HERE         here.Config
}

// Running holds the started emulators.
type Running struct {
	URLs         map[string]string // emulator → base URL
	Webhook      *webhook.Server
	CloudZero    *cloudzero.Server
	CloudCruiser *cloudcruiser.Server
	Acronis      *acronis.Server
	HERE         *here.Server
	servers      []*http.Server
}

type emulator interface {
	Handler() http.Handler
	Faults() *fault.Injector
}

// Start starts the emulators.
func Start(o Options) (*Running, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if ip := net.ParseIP(o.Host); o.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("sandbox: host %q is not a loopback address: the emulators are for local tests only", o.Host)
	}
	want := map[string]bool{}
	for _, n := range o.Only {
		want[n] = true
	}
	serveIt := func(n string) bool { return len(want) == 0 || want[n] }
	for n := range want {
		if n != Webhook && n != CloudZero && n != CloudCruiser && n != Acronis && n != HERE {
			return nil, fmt.Errorf("sandbox: unknown emulator %q (have %v)", n, Names())
		}
	}
	r := &Running{URLs: map[string]string{}}
	emus := map[string]emulator{}
	if serveIt(Webhook) {
		r.Webhook = webhook.New(o.Webhook)
		emus[Webhook] = r.Webhook
	}
	if serveIt(CloudZero) {
		r.CloudZero = cloudzero.New(o.CloudZero)
		emus[CloudZero] = r.CloudZero
	}
	if serveIt(CloudCruiser) {
		r.CloudCruiser = cloudcruiser.New(o.CloudCruiser)
		emus[CloudCruiser] = r.CloudCruiser
	}
	if serveIt(Acronis) {
		r.Acronis = acronis.New(o.Acronis)
		emus[Acronis] = r.Acronis
	}
	if serveIt(HERE) {
		r.HERE = here.New(o.HERE)
		emus[HERE] = r.HERE
	}
	names := make([]string, 0, len(emus))
	for n := range emus {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := emus[n]
		if spec := o.Faults[n]; spec != "" {
			rules, err := fault.ParseSpec(spec)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("sandbox %s faults: %w", n, err)
			}
			e.Faults().Set(rules...)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, fmt.Sprint(o.Ports[n])))
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("sandbox %s: %w", n, err)
		}
		srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 10 * time.Second}
		r.servers = append(r.servers, srv)
		r.URLs[n] = "http://" + ln.Addr().String()
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				_ = err
			}
		}()
	}
	return r, nil
}

// Close stops every emulator.
func (r *Running) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range r.servers {
		_ = s.Shutdown(ctx)
	}
}
