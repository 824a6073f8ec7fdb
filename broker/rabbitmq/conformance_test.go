package rabbitmq

import (
	"testing"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/broker/brokertest"
)

func TestConformance(t *testing.T) {
	url := amqpURL(t)
	brokertest.Run(t, func(t *testing.T) scheduler.Broker {
		return newTestBroker(t, url)
	})
}
