package demo

import (
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/messages"
	czdest "github.com/usagefleet/usagefleet/workers/cloudzero"
)

func webhookConfig(token string) sbwebhook.Config {
	return sbwebhook.Config{Token: token, MaxBodyBytes: 256 << 10}
}

func cloudzeroConfig(conn, key string) cloudzero.Config {
	return cloudzero.Config{Connections: map[string]string{conn: key}}
}

// cloudzeroHeld is what the CloudZero sandbox holds for the connection,
// leaving out the placeholder rows the destination writes to clear an
// emptied hour (none in the demo, unless every record of an hour failed).
func cloudzeroHeld(sb *serve.Running, conn string) (int, messages.Decimal) {
	var sum messages.Sum
	rows := 0
	for hour, t := range sb.CloudZero.Hours(conn) {
		rows += t.Rows
		sum.Add(messages.FromBig(t.Cost))
		if t.Rows == 1 {
			for _, r := range sb.CloudZero.Rows(conn, hour) {
				if r["lineitem/id"] == czdest.PlaceholderLineItemID {
					rows--
				}
			}
		}
	}
	return rows, sum.Decimal()
}
