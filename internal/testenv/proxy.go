package testenv

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// ConnectProxy is a real HTTP CONNECT proxy on loopback (the kind of egress
// proxy -delivery.proxy names, e.g. smokescreen), for tests: it tunnels to
// whatever target it is asked for, with no address checks of its own, and
// records every CONNECT and the local address of every tunnel it opened.
type ConnectProxy struct {
	ln   net.Listener
	auth string // required Proxy-Authorization, or ""
	// Connects counts CONNECT requests; Refused those it answered with an error.
	Connects, Refused atomic.Int64

	mu      sync.Mutex
	targets []string
	locals  map[string]bool // local addresses of the proxy's connections to targets
	deny    map[string]bool // targets answered with 403
	conns   map[net.Conn]bool
}

// StartConnectProxy starts a proxy on 127.0.0.1; with user set, requests
// must carry Proxy-Authorization for user:pass. It stops when the test ends.
func StartConnectProxy(t testing.TB, user, pass string) *ConnectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ConnectProxy{ln: ln, locals: map[string]bool{}, deny: map[string]bool{}, conns: map[net.Conn]bool{}}
	if user != "" {
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

// URL is the proxy's URL, with user:pass when given.
func (p *ConnectProxy) URL(user, pass string) string {
	if user == "" {
		return "http://" + p.ln.Addr().String()
	}
	return "http://" + user + ":" + pass + "@" + p.ln.Addr().String()
}

// Deny makes the proxy answer 403 to CONNECT target (host:port).
func (p *ConnectProxy) Deny(target string) {
	p.mu.Lock()
	p.deny[target] = true
	p.mu.Unlock()
}

// Targets returns the CONNECT targets asked for, in order.
func (p *ConnectProxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// Tunnelled reports whether addr (a receiver's view of its peer) is the
// local address of a connection this proxy opened.
func (p *ConnectProxy) Tunnelled(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.locals[addr]
}

func (p *ConnectProxy) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *ConnectProxy) serve(c net.Conn) {
	defer p.track(c, false)
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	refuse := func(status string) {
		p.Refused.Add(1)
		io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") //nolint:errcheck
	}
	if req.Method != http.MethodConnect {
		refuse("405 Method Not Allowed")
		return
	}
	p.Connects.Add(1)
	target := req.RequestURI
	p.mu.Lock()
	p.targets = append(p.targets, target)
	denied := p.deny[target]
	p.mu.Unlock()
	switch {
	case p.auth != "" && req.Header.Get("Proxy-Authorization") != p.auth:
		refuse("407 Proxy Authentication Required")
		return
	case denied:
		refuse("403 Forbidden")
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		refuse("502 Bad Gateway")
		return
	}
	p.track(up, true)
	defer p.track(up, false)
	defer up.Close()
	p.mu.Lock()
	p.locals[up.LocalAddr().String()] = true
	p.mu.Unlock()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(up, br) //nolint:errcheck // what the client sent, buffered bytes first
		up.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		io.Copy(c, up) //nolint:errcheck
		c.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}
