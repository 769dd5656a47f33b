package gateway

import (
	mux "github.com/fasthttp/router"

	"github.com/zaits/webhooks/gateway/console"
)

// routes registers every route of the public API: the one place to read
// what the gateway serves. schemas/openapi.json documents each of them.
func (g *Gateway) routes(r *mux.Router) {
	// Management API: an account API key (see account in auth.go).
	r.POST("/v1/webhooks/endpoints", g.account("createEndpoint", g.createEndpoint))
	r.GET("/v1/webhooks/endpoints", g.account("listEndpoints", g.listEndpoints))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}", g.account("getEndpoint", g.getEndpoint))
	r.PUT("/v1/webhooks/endpoints/{endpoint_id}", g.account("updateEndpoint", g.updateEndpoint))
	r.DELETE("/v1/webhooks/endpoints/{endpoint_id}", g.account("deleteEndpoint", g.deleteEndpoint))
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/test", g.account("testEndpoint", g.testEndpoint))
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/secret/rotate", g.account("rotateSecret", g.rotateSecret))
	r.DELETE("/v1/webhooks/endpoints/{endpoint_id}/secret/previous", g.account("retirePreviousSecret", g.retirePreviousSecret))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}/deliveries", g.account("listDeliveries", g.listDeliveries))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}/deliveries/{delivery_id}", g.account("getDelivery", g.getDelivery))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}/stats", g.account("endpointStats", g.endpointStats))
	// Recovery (recovery.go).
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/deliveries/{delivery_id}/resend", g.account("resendDelivery", g.resendDelivery))
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/recover", g.account("recoverDeliveries", g.recoverDeliveries))
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/replay", g.account("replayEvents", g.replayEvents))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}/dead-letters", g.account("listDeadLetters", g.listDeadLetters))
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/dead-letters/replay", g.account("redriveDeadLetters", g.redriveDeadLetters))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}/jobs", g.account("listJobs", g.listJobs))
	r.GET("/v1/webhooks/endpoints/{endpoint_id}/jobs/{job_id}", g.account("getJob", g.getJob))
	r.POST("/v1/webhooks/endpoints/{endpoint_id}/jobs/{job_id}/cancel", g.account("cancelJob", g.cancelJob))
	r.GET("/v1/webhooks/events", g.account("listEvents", g.listEvents))
	// The contract itself, public.
	r.GET("/v1/openapi.json", g.openAPI)

	// Event ingestion (ingest*.go).
	r.POST("/v1/events", g.postEvent)
	r.POST("/v1/events/batch", g.postEventBatch)

	// The delivery console (gateway/console): a web page, not an API operation.
	console.New().Register(r)
}
