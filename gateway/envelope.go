package gateway

import (
	"errors"
	"github.com/zaits/webhooks/schemas"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
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

// requestErrorHandler answers requests fasthttp could not read (a body over
// the server's limit, a malformed request) with the error envelope.
func requestErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "payload_too_large", "the request body is too large")
		return
	}
	writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "the request could not be read")
}
