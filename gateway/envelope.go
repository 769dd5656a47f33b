package gateway

import (
	"errors"
	"fmt"
	"net"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/schemas"
)

type apiError struct {
	Code    string               `json:"code"`
	Message string               `json:"message"`
	Details []schemas.FieldIssue `json:"details,omitempty"`
}

type errorEnvelope struct {
	Success bool     `json:"success"`
	Error   apiError `json:"error"`
}

// writeError answers with the API's error envelope:
// {"success": false, "error": {"code", "message", "details"}}.
func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string, details ...schemas.FieldIssue) {
	writeJSON(ctx, status, errorEnvelope{Error: apiError{Code: code, Message: msg, Details: details}})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		b = []byte(`{"success":false,"error":{"code":"internal_error","message":"could not encode the response"}}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// requestErrorHandler answers requests fasthttp could not read with the
// error envelope: a request line and headers over MaxHeaderBytes together
// (431), a body over the server's limit (413), anything malformed or too
// slow (400). Nothing of the request is repeated: it may carry secrets.
func requestErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "header_too_large",
			fmt.Sprintf("the request line and headers are over %d bytes together", MaxHeaderBytes))
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "payload_too_large", "the request body is too large")
	case errors.As(err, &ne) && ne.Timeout():
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "the request was not sent in time")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "the request could not be read: it is not well-formed HTTP/1.1")
	}
}
