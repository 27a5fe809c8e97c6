package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

type acksCommand struct {
	env          *env
	source, dest string
	since        string
	json         bool
	nats         natsFlags
}

func acksCmd(e *env) (*flag.FlagSet, runFunc) {
	c := &acksCommand{env: e}
	fs := newFlagSet("acks")
	fs.StringVar(&c.source, "source", "", "only acks of this source (default: all)")
	fs.StringVar(&c.dest, "dest", "", "only acks from this destination (default: all)")
	fs.StringVar(&c.since, "since", "", "start this long ago (1h, 30m) or at this RFC 3339 time (default: only new acks)")
	fs.BoolVar(&c.json, "json", false, "print each ack as its JSON event")
	c.nats.register(fs)
	return fs, c.run
}

func (c *acksCommand) run(ctx context.Context, fs *flag.FlagSet, args []string) int {
	stdout, stderr := c.env.stdout, c.env.stderr
	if len(args) > 0 {
		return usageErr(fs, "unexpected argument %q", args[0])
	}
	for flagName, v := range map[string]string{"--source": c.source, "--dest": c.dest} {
		if v != "" && !messages.ValidToken(v) {
			return usageErr(fs, "%s %q: want 1-64 of A-Z a-z 0-9 _ -", flagName, v)
		}
	}
	since, err := parseSince(c.since, time.Now())
	if err != nil {
		return usageErr(fs, "--since: %v", err)
	}
	opts, err := c.nats.options(c.env.getenv)
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	nc, p, err := connect(ctx, opts, nil, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "usage-producer: %v\n", err)
		return exitFail
	}
	defer nc.Close()
	err = p.FollowAcks(ctx, producer.AckFilter{Source: c.source, Destination: c.dest, Since: since}, func(a messages.Ack) error {
		if c.json {
			b, err := messages.EncodeAck(a)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(stdout, formatAck(a))
		return err
	})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "usage-producer: %v\n", err)
		return exitFail
	}
	return exitOK // interrupted: the normal way to stop following
}

// parseSince reads a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := messages.ParseTime(s)
	if err != nil {
		return time.Time{}, errors.New("want a duration (1h, 30m) or an RFC 3339 time")
	}
	return t, nil
}

// formatAck is one line: when, outcome, where, what, how much, why.
func formatAck(a messages.Ack) string {
	if a.Status == "" {
		return "undecodable ack: " + a.Reason
	}
	var b strings.Builder
	cost := orZero(a.Cost)
	if a.Costs != nil {
		var cs messages.CurrencySums
		cs.AddAll(a.Costs)
		cost = cs.String()
	}
	fmt.Fprintf(&b, "%s %-10s %s -> %s batch %s part %d: %s, cost %s",
		a.Time.UTC().Format(time.RFC3339), a.Status, a.Source, a.Destination, a.BatchID, a.Part, plural(a.Records, "record"), cost)
	if a.Rejected > 0 {
		fmt.Fprintf(&b, ", %d rejected", a.Rejected)
	}
	if a.Warnings > 0 {
		fmt.Fprintf(&b, ", %s", plural(a.Warnings, "warning"))
	}
	switch {
	case a.Reasons != nil:
		// Every reason with its records, most first.
		var rc messages.ReasonCounts
		rc.AddAll(a.Reasons)
		for i, r := range rc.Sorted() {
			sep := "; "
			if i == 0 {
				sep = ": "
			}
			fmt.Fprintf(&b, "%s%s (%d)", sep, r.Reason, r.Count)
		}
	case a.Reason != "":
		fmt.Fprintf(&b, ": %s", a.Reason)
	}
	return b.String()
}

func orZero(d messages.Decimal) string {
	if !d.IsSet() {
		return "0"
	}
	return d.String()
}
