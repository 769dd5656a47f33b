package dispatcher_test

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/endpoint"
)

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func newBenchClient(b *testing.B) *dispatcher.Client {
	c, err := dispatcher.NewClient(dispatcher.ClientConfig{AllowNetworks: loopback}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func benchRequest(url string, body []byte, secrets [][]byte, headers []endpoint.Header) dispatcher.Request {
	return dispatcher.Request{URL: url, Body: body, EventType: "document.signed", DeliveryID: "del_x", Secrets: secrets, Now: time.Now(), Headers: headers}
}
