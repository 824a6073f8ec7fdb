package rabbitmq_test

import (
	"context"
	"log"
	"time"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/broker/rabbitmq"
)

// A broker on a two-node cluster, used directly. With the Scheduler it is
// simply passed to scheduler.New.
func ExampleNew() {
	ctx := context.Background()
	b, err := rabbitmq.New(ctx,
		[]string{"amqp://guest:guest@rabbit-1:5672/", "amqp://guest:guest@rabbit-2:5672/"},
		rabbitmq.WithPrefix("billing"),
		rabbitmq.WithConnectionName("billing-api"),
		rabbitmq.WithDeadLetterLimits(10_000, 7*24*time.Hour),
		rabbitmq.WithLogger(zap.NewExample()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// Returns once RabbitMQ confirmed the message; it is delivered in a
	// minute, ahead of lower priorities waiting then.
	err = b.Publish(ctx, scheduler.Message{TaskID: "0190f3a2-task", Queue: "invoices",
		Priority: scheduler.PriorityHigh, Delay: time.Minute})
	if err != nil {
		log.Fatal(err)
	}

	c, err := b.Consume(ctx, "invoices", 8)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for d := range c.Deliveries() {
		log.Printf("task %s, attempt %d", d.Message().TaskID, d.Message().Attempt)
		if err := d.Ack(ctx); err != nil {
			log.Print(err) // rabbitmq.ErrDeliveryLost: it comes again
		}
	}
}
