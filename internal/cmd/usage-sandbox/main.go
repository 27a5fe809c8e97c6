// Command usage-sandbox serves the billing API emulators (Acronis, Cloud
// Cruiser, CloudZero, HERE, webhook) on loopback, each on its own port, for
// local runs, the compose stack and hand tests:
//
//	usage-sandbox [--only cloudzero,webhook] [--<name>-port N] [--<name>-faults SPEC] ...
//
// It is a binary of its own, not a command of usage-worker, so that the
// production worker links none of the emulators (a test in
// workers/cmd/usage-worker holds it to that). It lives under internal/cmd
// because it is a development tool built from this repository, not a
// product: nothing outside the module can import what it is made of.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/internal/sandbox/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run serves until ctx ends; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("usage-sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage-sandbox: serve the sandbox API emulators on loopback until interrupted\n\nFlags:")
		fs.PrintDefaults()
	}
	host := fs.String("host", "127.0.0.1", "listen address (loopback only)")
	only := fs.String("only", "", "comma-separated emulators to serve (default all: "+strings.Join(serve.Names(), ", ")+")")
	ports := map[string]*int{}
	faults := map[string]*string{}
	for i, n := range serve.Names() {
		ports[n] = fs.Int(n+"-port", 18080+i, n+" emulator port (0 = random)")
		faults[n] = fs.String(n+"-faults", "", n+" faults, e.g. 500@0.1,429:retry=2x3,apply-500@0.2,timeout:delay=5s@0.05,reset@0.05")
	}
	hookToken := fs.String("webhook-token-env", "", "environment variable holding the bearer token the webhook emulator requires (default: none required)")
	hookSigning := fs.String("webhook-signing-secret-env", "", "environment variable holding the Standard Webhooks secret(s) (whsec_..., several separated by spaces while rotating) the webhook emulator verifies signatures with (default: signatures not checked)")
	czConn := fs.String("cloudzero-connection", "sandbox-connection", "CloudZero connection id")
	czKey := fs.String("cloudzero-key-env", "CLOUDZERO_API_KEY", "environment variable holding the CloudZero API key the emulator accepts (unset: sandbox-cloudzero-key)")
	ccToken := fs.String("cloudcruiser-token-env", "CLOUDCRUISER_TOKEN", "environment variable holding the Cloud Cruiser token the emulator accepts")
	acronisID := fs.String("acronis-client-id", "sandbox-client", "Acronis API client id the emulator accepts")
	acronisSecret := fs.String("acronis-secret-env", "ACRONIS_CLIENT_SECRET", "environment variable holding the Acronis client secret the emulator accepts")
	hereID := fs.String("here-access-key-id", "sandbox-here-key", "HERE access key id the emulator accepts")
	hereSecret := fs.String("here-secret-env", "HERE_ACCESS_KEY_SECRET", "environment variable holding the HERE access key secret the emulator accepts")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage-sandbox: unexpected argument %q (it takes flags only; -h lists them)\n", fs.Arg(0))
		return 2
	}
	o := serve.Options{Host: *host, Ports: map[string]int{}, Faults: map[string]string{}}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	for n, p := range ports {
		o.Ports[n] = *p
		o.Faults[n] = *faults[n]
	}
	// The emulators' credentials come from the environment; unset, the
	// documented sandbox defaults apply (they guard nothing real).
	secret := func(env, def string) string {
		if env != "" {
			if v := os.Getenv(env); v != "" {
				return v
			}
		}
		return def
	}
	o.Webhook.Token = secret(*hookToken, "")
	if *hookSigning != "" {
		secrets := strings.Fields(os.Getenv(*hookSigning))
		if len(secrets) == 0 {
			fmt.Fprintf(stderr, "usage-sandbox: --webhook-signing-secret-env: environment variable %s is not set\n", *hookSigning)
			return 2
		}
		for i, v := range secrets {
			if _, err := webhook.DecodeSecret(v); err != nil {
				// The error never holds the value.
				fmt.Fprintf(stderr, "usage-sandbox: --webhook-signing-secret-env: secret %d of %s: %v\n", i+1, *hookSigning, err)
				return 2
			}
		}
		o.Webhook.SigningSecrets = secrets
	}
	o.CloudZero.Connections = map[string]string{*czConn: secret(*czKey, "sandbox-cloudzero-key")}
	o.CloudCruiser.Token = secret(*ccToken, "sandbox-cloudcruiser-token")
	o.Acronis.ClientID = *acronisID
	o.Acronis.ClientSecret = secret(*acronisSecret, "sandbox-secret")
	o.HERE.AccessKeyID = *hereID
	o.HERE.AccessKeySecret = secret(*hereSecret, "sandbox-here-secret")
	r, err := serve.Start(o)
	if err != nil {
		fmt.Fprintln(stderr, "usage-sandbox:", err)
		return 1
	}
	defer r.Close()
	names := make([]string, 0, len(r.URLs))
	for n := range r.URLs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "%-13s %s   (admin: %s/_sandbox/)\n", n, r.URLs[n], r.URLs[n])
	}
	<-ctx.Done()
	return 0
}
