package gateway

import (
	"github.com/fasthttp/router"
)

// routes registers every route of the public API: the one place to read
// what the gateway serves.
func (g *Gateway) routes(r *router.Router) {
}
