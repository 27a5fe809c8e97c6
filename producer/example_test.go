package producer_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// A service publishes a batch of usage and learns how it was split. (The
// embedded server stands in for your NATS cluster.)
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	srv, _ := broker.StartEmbedded(dir, 0)
	defer srv.Close()
	nc, _ := nats.Connect(srv.URL)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	_ = broker.EnsureStreams(context.Background(), js, broker.StreamOptions{})

	p, err := producer.New(nc, producer.Options{})
	if err != nil {
		panic(err)
	}
	at := time.Date(2024, 8, 16, 13, 5, 0, 0, time.UTC)
	res, err := p.Publish(context.Background(), &messages.Batch{
		ID:     "invoice-run-42", // a retried publish of the same id is stored once
		Feed:   "cloud",
		Source: "billing-svc",
		Records: []messages.UsageRecord{
			{ChargePeriodStart: at, SubAccountId: "team-a", ServiceName: "Compute", BilledCost: messages.MustDecimal("12.50"), BillingCurrency: "USD"},
			{ChargePeriodStart: at.Add(time.Hour), SubAccountId: "team-b", ServiceName: "Storage", BilledCost: messages.MustDecimal("0.0003"), BillingCurrency: "USD"},
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Records, "records,", len(res.Parts), "parts, cost", res.Cost)
	for _, part := range res.Parts {
		fmt.Println(part.Subject)
	}
	// Output:
	// 2 records, 2 parts, cost 12.5003
	// usage.cloud.2024.08.16.13
	// usage.cloud.2024.08.16.14
}
