// Package ops is what an operator runs against a fleet from the command
// line (usage-worker status | dead | reconcile | validate | version): it reads
// the streams, buckets and destination APIs and answers the four daily
// questions of a billing pipeline: is anything stuck (Status), what was
// refused and why (ListDead), can it be sent again now that the cause is
// fixed (Replay), and does every destination hold exactly what was
// published (Reconcile).
//
// Exit codes (every binary: usage-worker, usage-producer, usage-gateway;
// README "Exit codes"):
//
//	0   ok (also: -h / help)
//	1   failure, or something needs a person: a paused destination, a dead
//	    letter, an old unit (status); a mismatch (reconcile); an invalid
//	    config (validate); a replay that failed
//	2   done, but some items were refused (producer: rows rejected;
//	    dead replay: some dead letters cannot be replayed by this tool)
//	64  usage error: unknown command, bad or missing flag (sysexits EX_USAGE,
//	    as usage-producer always did)
//	130 interrupted
package ops

// Exit codes shared by the subcommands.
const (
	ExitOK        = 0
	ExitAttention = 1
	ExitPartial   = 2
	ExitUsage     = 64
	ExitInterrupt = 130
)
