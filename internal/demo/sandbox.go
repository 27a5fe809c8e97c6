package demo

import sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"

func webhookConfig(token string) sbwebhook.Config {
	return sbwebhook.Config{Token: token, MaxBodyBytes: 256 << 10}
}
