package webhook_test

import "github.com/usagefleet/usagefleet/internal/config"

func configSecret(v string) config.Secret { return config.NewSecret(v) }
