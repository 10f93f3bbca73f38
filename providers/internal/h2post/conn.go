package h2post

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// The receive window of the connection, raised at once from the
	// protocol's 64 KiB so that many small answers in flight never wait.
	connRecvWindow = 1 << 24
	// Window updates are sent when this much of a window was consumed.
	connRecvUpdate   = connRecvWindow / 2
	streamRecvWindow = 65535 // the protocol's default: not announced
	streamRecvUpdate = streamRecvWindow / 2
	maxStreamID      = 1<<31 - 1
	// flushEvery: a round that has written this many requests is flushed
	// before it ends. A caller that wakes with a hundred answers at once
	// (the dispatcher reads them in bursts) turns them into new requests
	// one after another; holding them all until the last would leave the
	// server idle meanwhile, and the bursts would grow. Against the pinned
	// simulator the dispatcher was faster with it in nine of ten
	// interleaved pairs of runs (by 3-28%; slower once, by 8%), the
	// simulator busy 89-94% of its core instead of 86-91%; the sender
	// alone, whose bursts are small, did not change.
	flushEvery = 32
)

// errUnusable is returned by Conn.start on a connection that takes no new
// streams; Pool.Post then picks another.
var errUnusable = fmt.Errorf("h2post: connection takes no new streams: %w", ErrNotProcessed)

// GoAwayError is a server's GOAWAY. The errors of the requests it failed,
// and of the connection it closed, wrap it: a server may say in its debug
// data why it closed the connection (APNs sends {"reason":"BadCertificate"}
// and the like), which only the caller knows how to read.
type GoAwayError struct {
	LastStreamID uint32
	Code         http2.ErrCode
	DebugData    []byte
}

func (e *GoAwayError) Error() string {
	if len(e.DebugData) == 0 {
		return fmt.Sprintf("GOAWAY %v", e.Code)
	}
	d := e.DebugData
	if len(d) > 256 {
		d = d[:256]
	}
	return fmt.Sprintf("GOAWAY %v %q", e.Code, d)
}

// errFull is returned by Conn.start, when told not to wait, on a connection
// whose streams are all taken; Pool.Post then picks again.
var errFull = errors.New("h2post: connection has no free stream")

type streamState uint8

const (
	stQueued streamState = iota // in Conn.queue, no ID yet
	stOpen                      // HEADERS taken by the writer; in Conn.streams
	stDone                      // answered, failed or cancelled
)

// stream is one request and, once answered, its response.
type stream struct {
	path   string
	header []hpack.HeaderField
	body   []byte

	// Guarded by Conn.mu.
	id          uint32
	state       streamState
	sent        int   // body bytes granted to the writer so far
	sendWin     int64 // peer's window for this stream
	recvUnacked int   // DATA bytes not yet returned by WINDOW_UPDATE
	gotHeaders  bool
	resp        Response
	err         error
	done        chan struct{} // closed when state becomes stDone by an answer or failure

	// The writer's, for the current round.
	grantOff, grant int
}

type waiter struct {
	ch    chan struct{}
	woken bool
}

type windowUpdate struct{ id, n uint32 }

type rst struct {
	id   uint32
	code http2.ErrCode
}

// control holds the frames the reader (and cancellations) ask the writer to
// send.
type control struct {
	settingsAcks int
	pingAcks     [][8]byte
	ping         bool
	updates      []windowUpdate
	rsts         []rst
}

func (c *control) empty() bool {
	return c.settingsAcks == 0 && len(c.pingAcks) == 0 && !c.ping && len(c.updates) == 0 && len(c.rsts) == 0
}

func (c *control) reset() {
	c.settingsAcks, c.ping = 0, false
	c.pingAcks, c.updates, c.rsts = c.pingAcks[:0], c.updates[:0], c.rsts[:0]
}

// Conn is one HTTP/2 connection.
type Conn struct {
	p    *Pool
	nc   net.Conn
	bw   *bufio.Writer
	fw   *http2.Framer // the writer goroutine's
	fr   *http2.Framer // the reader goroutine's
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	wake         chan struct{} // cap 1: work for the writer
	dead         chan struct{} // closed by fail
	settingsSeen chan struct{} // closed at the peer's first SETTINGS
	pingAck      chan struct{} // cap 1
	framesRead   atomic.Uint64
	// The reader's: connection-level DATA not yet returned by
	// WINDOW_UPDATE, and the header block being read with its decoder.
	recvUnacked int
	dec         *hpack.Decoder
	fields      []hpack.HeaderField
	hblock      []byte
	hstream     uint32
	hend        bool

	mu            sync.Mutex
	streams       map[uint32]*stream
	queue         []*stream
	blocked       []*stream // open streams with body bytes the windows do not allow yet
	waiters       []*waiter
	active        int // queued and open streams
	nextID        uint32
	maxStreams    int
	initWin       int64 // peer's INITIAL_WINDOW_SIZE
	connWin       int64 // peer's connection window
	maxFrame      int
	maxHeaderList uint32 // 0: no limit
	tableSize     uint32
	tableChanged  bool
	goAwayErr     *GoAwayError // the server's GOAWAY, once received: no new streams
	closing       bool
	sawSettings   bool
	answered      bool // a stream was answered: the server serves this connection (redial backoff, Pool.dial)
	err           error
	ctrl          control
	// closeAfterFlush: close once idle and flushed (GOAWAY, Pool.Close).
	closeAfterFlush bool
	pingData        [8]byte
	pingOut         bool
}

func dialConn(ctx context.Context, p *Pool) (*Conn, error) {
	nc, err := p.cfg.Dial(ctx, "tcp", p.addr, p.tls)
	if err != nil {
		return nil, fmt.Errorf("h2post: dial %s: %w", p.addr, err)
	}
	if tc, ok := nc.(*tls.Conn); ok {
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "h2" {
			_ = nc.Close()
			return nil, fmt.Errorf("h2post: dial %s: server does not speak HTTP/2 (ALPN %q)", p.addr, proto)
		}
	}
	c := &Conn{
		p: p, nc: nc,
		wake: make(chan struct{}, 1), dead: make(chan struct{}), settingsSeen: make(chan struct{}),
		pingAck: make(chan struct{}, 1),
		streams: make(map[uint32]*stream), nextID: 1,
		// Until the peer's SETTINGS (awaited below) the protocol's defaults.
		maxStreams: 100, initWin: 65535, connWin: 65535, maxFrame: 16384,
	}
	c.bw = bufio.NewWriterSize(nc, 64<<10)
	c.fw = http2.NewFramer(c.bw, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(nil, bufio.NewReaderSize(nc, 32<<10))
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(16384)
	// Header blocks are decoded here rather than by the framer
	// (ReadMetaHeaders), into one reused slice: the framer allocates a frame,
	// a growing slice and checks per answer.
	c.dec = hpack.NewDecoder(4096, func(f hpack.HeaderField) { c.fields = append(c.fields, f) })
	c.dec.SetMaxStringLength(64 << 10)

	_, err = io.WriteString(c.bw, http2.ClientPreface)
	if err == nil {
		err = c.fw.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 1 << 20})
	}
	if err == nil {
		err = c.fw.WriteWindowUpdate(0, connRecvWindow-65535)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("h2post: start HTTP/2 with %s: %w", p.addr, err)
	}
	go c.readLoop()
	go c.writeLoop()
	select {
	case <-c.settingsSeen:
	case <-c.dead:
		return nil, fmt.Errorf("h2post: start HTTP/2 with %s: %w", p.addr, c.failure())
	case <-ctx.Done():
		c.fail(ctx.Err())
		return nil, fmt.Errorf("h2post: start HTTP/2 with %s: no SETTINGS from the server: %w", p.addr, ctx.Err())
	}
	if p.cfg.PingInterval > 0 {
		go c.healthLoop(p.cfg.PingInterval, p.cfg.PingTimeout)
	}
	return c, nil
}

func (c *Conn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.usableLocked()
}

// load reports the connection's queued and open streams, whether it has a
// stream free under the server's limit, and whether it takes new streams at
// all.
func (c *Conn) load() (active int, room, usable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active, c.active < c.maxStreams, c.usableLocked()
}

// wasAnswered reports whether any stream was answered on the connection.
func (c *Conn) wasAnswered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answered
}

// goneErr is why the connection takes no new streams.
func (c *Conn) goneErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return c.err
	case c.goAwayErr != nil:
		return fmt.Errorf("h2post: connection closed by the server's %w", c.goAwayErr)
	case c.closing:
		return errors.New("h2post: connection closed by the client")
	}
	return errors.New("h2post: connection out of stream ids")
}

func (c *Conn) usableLocked() bool {
	return c.err == nil && c.goAwayErr == nil && !c.closing &&
		int64(c.nextID)+2*int64(c.active+1) < maxStreamID
}

func headerListSize(n int, fields []hpack.HeaderField) uint32 {
	for _, f := range fields {
		n += len(f.Name) + len(f.Value) + 32
	}
	return uint32(n)
}

// start queues st for the writer once the peer's stream limit allows; with
// wait false it returns errFull instead of waiting.
func (c *Conn) start(ctx context.Context, st *stream, wait bool) error {
	c.mu.Lock()
	if !c.usableLocked() {
		c.mu.Unlock()
		return errUnusable
	}
	if c.maxHeaderList > 0 {
		// The pseudo-headers and content-length, roughly.
		pseudo := len(":method") + len("POST") + len(":scheme") + len(c.p.scheme) + len(":authority") + len(c.p.authority) +
			len(":path") + len(st.path) + len("content-length") + 10 + 5*32
		if n := headerListSize(pseudo, st.header); n > c.maxHeaderList {
			c.mu.Unlock()
			return fmt.Errorf("h2post: header list of %d bytes exceeds the server's limit of %d: %w (%w)", n, c.maxHeaderList, ErrHeaderListTooLarge, ErrNotProcessed)
		}
	}
	for c.active >= c.maxStreams {
		if !wait {
			c.mu.Unlock()
			return errFull
		}
		w := &waiter{ch: make(chan struct{})}
		c.waiters = append(c.waiters, w)
		c.mu.Unlock()
		select {
		case <-w.ch:
		case <-ctx.Done():
		}
		c.mu.Lock()
		if !w.woken {
			for i, x := range c.waiters {
				if x == w {
					c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
					break
				}
			}
			c.mu.Unlock()
			return ctx.Err()
		}
		if ctx.Err() != nil {
			c.wakeOneLocked() // pass the wake-up on
			c.mu.Unlock()
			return ctx.Err()
		}
		if !c.usableLocked() {
			// Every waiter must look elsewhere: a stream that ends wakes
			// only one, and a connection out of stream ids has no other
			// event that would wake the rest.
			c.wakeAllLocked()
			c.mu.Unlock()
			return errUnusable
		}
	}
	st.done = make(chan struct{})
	st.state = stQueued
	c.active++
	c.queue = append(c.queue, st)
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *Conn) wakeOneLocked() {
	if len(c.waiters) == 0 {
		return
	}
	w := c.waiters[0]
	c.waiters = c.waiters[1:]
	w.woken = true
	close(w.ch)
}

func (c *Conn) wakeAllLocked() {
	for _, w := range c.waiters {
		w.woken = true
		close(w.ch)
	}
	c.waiters = nil
}

// finishLocked ends st with err (nil: answered) and reports whether the
// connection should now be closed (going away and idle).
func (c *Conn) finishLocked(st *stream, err error) (closeNow bool) {
	if st.state == stOpen {
		delete(c.streams, st.id)
		if err == nil && st.sent < len(st.body) {
			// Answered before the body was all sent: the stream is still
			// open on the server's side, counting against its stream
			// limit, until the client ends it. Reset it (RFC 9113 8.1).
			c.ctrl.rsts = append(c.ctrl.rsts, rst{st.id, http2.ErrCodeCancel})
			c.signal()
		}
	}
	st.state = stDone
	st.err = err
	if err == nil && !c.answered {
		c.answered = true
	}
	close(st.done)
	return c.releaseLocked()
}

// accepted reports whether st's final answer arrived and is a success:
// the server took the request, whatever becomes of the rest of its body.
// A stream that ends so (the connection lost, a reset, the caller's
// deadline) is answered with what arrived, marked Truncated, never failed:
// a sender would re-send what the provider accepted, and deliver it twice.
func accepted(st *stream) bool {
	return st.gotHeaders && st.resp.Status >= 200 && st.resp.Status < 300
}

func (c *Conn) releaseLocked() (closeNow bool) {
	c.active--
	c.wakeOneLocked()
	return (c.goAwayErr != nil || c.closing) && c.active == 0 && c.err == nil
}

var errIdleGone = errors.New("h2post: connection closed after its last stream")

// wait waits for st's answer or ctx; a cancelled stream is reset.
func (c *Conn) wait(ctx context.Context, st *stream) (*Response, error) {
	select {
	case <-st.done:
		if st.err != nil {
			return nil, st.err
		}
		return &st.resp, nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	closeNow := false
	var resp *Response
	switch st.state {
	case stDone:
		c.mu.Unlock()
		if st.err != nil {
			return nil, st.err
		}
		return &st.resp, nil
	case stQueued:
		for i, x := range c.queue {
			if x == st {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				break
			}
		}
		st.state = stDone
		closeNow = c.releaseLocked()
	case stOpen:
		delete(c.streams, st.id)
		st.state = stDone
		c.ctrl.rsts = append(c.ctrl.rsts, rst{st.id, http2.ErrCodeCancel})
		closeNow = c.releaseLocked()
		if accepted(st) {
			st.resp.Truncated = true
			resp = &st.resp
		}
	}
	c.mu.Unlock()
	c.signal()
	if closeNow {
		c.closeIdle()
	}
	if resp != nil {
		return resp, nil
	}
	return nil, ctx.Err()
}

// closeIdle asks the writer to close the connection, which takes no new
// streams and has none left, once it has flushed what it holds (an
// RST_STREAM, say).
func (c *Conn) closeIdle() {
	c.mu.Lock()
	c.closeAfterFlush = true
	c.mu.Unlock()
	c.signal()
}

// shutdown makes the connection take no new streams and closes it once its
// streams are done.
func (c *Conn) shutdown() {
	c.mu.Lock()
	c.closing = true
	c.wakeAllLocked()
	idle := c.active == 0
	c.mu.Unlock()
	if idle {
		c.closeIdle()
	}
}

// fail closes the connection for err and fails what is left: streams not
// yet written with ErrNotProcessed, streams written with an error that says
// they may have been processed.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.goAwayErr != nil {
		// The GOAWAY may say why (a credential refused): keep it with
		// the close it announced.
		err = fmt.Errorf("%w, after the server's %w", err, c.goAwayErr)
	}
	c.err = err
	for _, st := range c.streams {
		st.state = stDone
		if accepted(st) {
			st.resp.Truncated = true
		} else {
			st.err = fmt.Errorf("h2post: connection lost with the request in flight (it may have been processed): %w", err)
		}
		close(st.done)
	}
	c.streams = nil
	for _, st := range c.queue {
		st.state = stDone
		st.err = fmt.Errorf("h2post: connection lost before the request was sent: %v: %w", err, ErrNotProcessed)
		close(st.done)
	}
	c.queue = nil
	c.blocked = nil
	c.active = 0
	c.wakeAllLocked()
	close(c.dead)
	c.mu.Unlock()
	_ = c.nc.Close()
}

// writeLoop writes what is queued, round after round, and flushes when a
// round finds nothing more to write, or every flushEvery requests.
func (c *Conn) writeLoop() {
	var batch, sendable []*stream
	var ctl control // swapped with c.ctrl each round
	var clen string
	clenOf := -1
	for {
		select {
		case <-c.wake:
		case <-c.dead:
			return
		}
		yielded := false
		unflushed := 0 // requests written since the last flush
		for {
			c.mu.Lock()
			if c.err != nil {
				c.mu.Unlock()
				return
			}
			ctl, c.ctrl = c.ctrl, ctl
			batch = append(batch[:0], c.queue...)
			clear(c.queue)
			c.queue = c.queue[:0]
			for _, st := range batch {
				st.id = c.nextID
				c.nextID += 2
				st.state = stOpen
				st.sendWin = c.initWin
				c.streams[st.id] = st
			}
			sendable = sendable[:0]
			keep := c.blocked[:0]
			for _, st := range c.blocked {
				if st.state != stOpen {
					continue
				}
				if c.grantLocked(st) {
					sendable = append(sendable, st)
				}
				if st.sent < len(st.body) {
					keep = append(keep, st)
				}
			}
			clear(c.blocked[len(keep):])
			c.blocked = keep
			for _, st := range batch {
				if len(st.body) == 0 {
					continue
				}
				if c.grantLocked(st) {
					sendable = append(sendable, st)
				}
				if st.sent < len(st.body) {
					c.blocked = append(c.blocked, st)
				}
			}
			maxFrame := c.maxFrame
			if c.tableChanged {
				c.tableChanged = false
				c.enc.SetMaxDynamicTableSizeLimit(c.tableSize)
			}
			c.mu.Unlock()

			if ctl.empty() && len(batch) == 0 && len(sendable) == 0 {
				// Let the callers that are runnable now queue their
				// requests first: one flush (one TLS record, one
				// write(2)) for all of them. Measured against the
				// pinned simulator it took 3-5 µs of client CPU off
				// each send.
				if !yielded {
					yielded = true
					runtime.Gosched()
					continue
				}
				break
			}
			yielded = false
			err := c.writeControl(&ctl)
			ctl.reset()
			for _, st := range batch {
				if err != nil {
					break
				}
				if n := len(st.body); n != clenOf {
					clenOf, clen = n, strconv.Itoa(n)
				}
				err = c.writeHeaders(st, clen, maxFrame)
			}
			for _, st := range sendable {
				if err != nil {
					break
				}
				err = c.writeData(st, maxFrame)
			}
			clear(batch)
			clear(sendable)
			if err == nil {
				if unflushed += len(batch); unflushed >= flushEvery {
					unflushed = 0
					err = c.bw.Flush()
				}
			}
			if err != nil {
				c.fail(fmt.Errorf("h2post: write: %w", err))
				return
			}
		}
		unflushed = 0
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				c.fail(fmt.Errorf("h2post: write: %w", err))
				return
			}
		}
		c.mu.Lock()
		done := c.closeAfterFlush && c.active == 0
		c.mu.Unlock()
		if done {
			c.fail(errIdleGone)
			return
		}
	}
}

// grantLocked gives st as many body bytes as both windows allow.
func (c *Conn) grantLocked(st *stream) bool {
	n := int64(len(st.body) - st.sent)
	n = min(n, c.connWin, st.sendWin)
	if n <= 0 {
		st.grant = 0
		return false
	}
	st.grantOff, st.grant = st.sent, int(n)
	st.sent += int(n)
	c.connWin -= n
	st.sendWin -= n
	return true
}

func (c *Conn) writeControl(ctl *control) error {
	for range ctl.settingsAcks {
		if err := c.fw.WriteSettingsAck(); err != nil {
			return err
		}
	}
	for _, d := range ctl.pingAcks {
		if err := c.fw.WritePing(true, d); err != nil {
			return err
		}
	}
	if ctl.ping {
		c.mu.Lock()
		d := c.pingData
		c.mu.Unlock()
		if err := c.fw.WritePing(false, d); err != nil {
			return err
		}
	}
	for _, u := range ctl.updates {
		if err := c.fw.WriteWindowUpdate(u.id, u.n); err != nil {
			return err
		}
	}
	for _, r := range ctl.rsts {
		if err := c.fw.WriteRSTStream(r.id, r.code); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) writeHeaders(st *stream, clen string, maxFrame int) error {
	c.hbuf.Reset()
	e := c.enc
	_ = e.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	_ = e.WriteField(hpack.HeaderField{Name: ":scheme", Value: c.p.scheme})
	_ = e.WriteField(hpack.HeaderField{Name: ":authority", Value: c.p.authority})
	// Paths differ per request (APNs puts the device token there): indexed,
	// they would push the authorization header out of the dynamic table.
	_ = e.WriteField(hpack.HeaderField{Name: ":path", Value: st.path, Sensitive: true})
	for _, f := range st.header {
		_ = e.WriteField(f)
	}
	if len(st.body) > 0 {
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: clen})
	}
	block := c.hbuf.Bytes()
	first := min(len(block), maxFrame)
	err := c.fw.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: block[:first],
		EndStream: len(st.body) == 0, EndHeaders: first == len(block)})
	for rest := block[first:]; err == nil && len(rest) > 0; {
		n := min(len(rest), maxFrame)
		err = c.fw.WriteContinuation(st.id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	return err
}

func (c *Conn) writeData(st *stream, maxFrame int) error {
	off, end := st.grantOff, st.grantOff+st.grant
	for off < end {
		n := min(end-off, maxFrame)
		if err := c.fw.WriteData(st.id, off+n == len(st.body), st.body[off:off+n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// readLoop reads frames until the connection fails.
func (c *Conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code, fmt.Errorf("h2post: stream %d: bad frame from the server: %w", se.StreamID, se))
				continue
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.fail(fmt.Errorf("h2post: read: %w", err))
			return
		}
		c.framesRead.Add(1)
		switch f := f.(type) {
		case *http2.HeadersFrame:
			c.hblock = append(c.hblock[:0], f.HeaderBlockFragment()...)
			c.hstream, c.hend = f.StreamID, f.StreamEnded()
			if f.HeadersEnded() {
				err = c.onHeaderBlock()
			}
		case *http2.ContinuationFrame: // the framer checks it follows its HEADERS
			c.hblock = append(c.hblock, f.HeaderBlockFragment()...)
			if len(c.hblock) > 1<<20 {
				err = errors.New("header block over 1 MiB")
			} else if f.HeadersEnded() {
				err = c.onHeaderBlock()
			}
		case *http2.DataFrame:
			c.onData(f)
		case *http2.RSTStreamFrame:
			c.onReset(f)
		case *http2.SettingsFrame:
			err = c.onSettings(f)
		case *http2.PingFrame:
			c.onPing(f)
		case *http2.WindowUpdateFrame:
			err = c.onWindowUpdate(f)
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			err = errors.New("PUSH_PROMISE although push is disabled")
		}
		if err != nil {
			c.fail(fmt.Errorf("h2post: %w", err))
			return
		}
	}
}

// resetStream fails stream id with err and sends RST_STREAM code.
func (c *Conn) resetStream(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	closeNow := false
	if st := c.streams[id]; st != nil {
		closeNow = c.finishLocked(st, err)
	}
	c.ctrl.rsts = append(c.ctrl.rsts, rst{id, code})
	c.mu.Unlock()
	c.signal()
	if closeNow {
		c.closeIdle()
	}
}

// onHeaderBlock decodes a complete header block (every block must be
// decoded, answered stream or not: HPACK state is per connection) and hands
// it to its stream.
func (c *Conn) onHeaderBlock() error {
	c.fields = c.fields[:0]
	if _, err := c.dec.Write(c.hblock); err != nil {
		return fmt.Errorf("HPACK: %w", err)
	}
	if err := c.dec.Close(); err != nil {
		return fmt.Errorf("HPACK: %w", err)
	}
	id, ended := c.hstream, c.hend
	status, regular := "", 0
	for _, f := range c.fields {
		if f.IsPseudo() {
			if f.Name == ":status" {
				status = f.Value
			}
		} else {
			regular++
		}
	}
	c.mu.Lock()
	st := c.streams[id]
	if st == nil { // cancelled, or failed by GOAWAY
		c.mu.Unlock()
		return nil
	}
	if !st.gotHeaders {
		code, err := strconv.Atoi(status)
		if err != nil || code < 100 || code > 999 {
			c.mu.Unlock()
			c.resetStream(id, http2.ErrCodeProtocol, fmt.Errorf("h2post: stream %d: bad :status %q", id, status))
			return nil
		}
		if code < 200 && !ended { // informational; the answer follows
			c.mu.Unlock()
			return nil
		}
		st.gotHeaders = true
		st.resp.Status = code
		if regular > 0 {
			h := make([]hpack.HeaderField, 0, regular)
			for _, f := range c.fields {
				if !f.IsPseudo() {
					h = append(h, f)
				}
			}
			st.resp.Header = h
		}
	} // else trailers, not used
	closeNow := false
	if ended {
		closeNow = c.finishLocked(st, nil)
	}
	c.mu.Unlock()
	if closeNow {
		c.closeIdle()
	}
	return nil
}

func (c *Conn) onData(f *http2.DataFrame) {
	n := int(f.Header().Length) // padding counts against the windows too
	var conn uint32
	c.recvUnacked += n
	if c.recvUnacked >= connRecvUpdate {
		conn = uint32(c.recvUnacked)
		c.recvUnacked = 0
	}
	c.mu.Lock()
	wake := conn > 0
	if conn > 0 {
		c.ctrl.updates = append(c.ctrl.updates, windowUpdate{0, conn})
	}
	closeNow := false
	st := c.streams[f.StreamID]
	switch {
	case st == nil:
	case !st.gotHeaders:
		c.mu.Unlock()
		c.resetStream(f.StreamID, http2.ErrCodeProtocol, fmt.Errorf("h2post: stream %d: DATA before HEADERS", f.StreamID))
		return
	default:
		d := f.Data()
		if room := c.p.cfg.MaxResponseBody - len(st.resp.Body); room > 0 {
			st.resp.Body = append(st.resp.Body, d[:min(room, len(d))]...)
		}
		if f.StreamEnded() {
			closeNow = c.finishLocked(st, nil)
			break
		}
		st.recvUnacked += n
		if st.recvUnacked >= streamRecvUpdate {
			c.ctrl.updates = append(c.ctrl.updates, windowUpdate{st.id, uint32(st.recvUnacked)})
			st.recvUnacked = 0
			wake = true
		}
	}
	c.mu.Unlock()
	if wake {
		c.signal()
	}
	if closeNow {
		c.closeIdle()
	}
}

func (c *Conn) onReset(f *http2.RSTStreamFrame) {
	var err error
	if f.ErrCode == http2.ErrCodeRefusedStream {
		err = fmt.Errorf("h2post: stream %d refused by the server: %w", f.StreamID, ErrNotProcessed)
	} else {
		err = fmt.Errorf("h2post: stream %d reset by the server: %v", f.StreamID, f.ErrCode)
	}
	c.mu.Lock()
	closeNow := false
	if st := c.streams[f.StreamID]; st != nil {
		if accepted(st) {
			st.resp.Truncated, err = true, nil
		}
		closeNow = c.finishLocked(st, err)
	}
	c.mu.Unlock()
	if closeNow {
		c.closeIdle()
	}
}

func (c *Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = int(min(s.Val, 1<<20))
			c.wakeAllLocked()
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.initWin
			c.initWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > maxStreamID {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(s.Val)
		case http2.SettingMaxHeaderListSize:
			c.maxHeaderList = s.Val
		case http2.SettingHeaderTableSize:
			c.tableSize, c.tableChanged = s.Val, true
		}
		return nil
	})
	if err == nil {
		c.ctrl.settingsAcks++
	}
	first := !c.sawSettings
	c.sawSettings = true
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("SETTINGS: %w", err)
	}
	c.signal()
	if first {
		close(c.settingsSeen)
	}
	return nil
}

func (c *Conn) onPing(f *http2.PingFrame) {
	c.mu.Lock()
	if f.IsAck() {
		if c.pingOut && f.Data == c.pingData {
			c.pingOut = false
			select {
			case c.pingAck <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
		return
	}
	c.ctrl.pingAcks = append(c.ctrl.pingAcks, f.Data)
	c.mu.Unlock()
	c.signal()
}

func (c *Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	if f.StreamID == 0 {
		c.connWin += int64(f.Increment)
		if c.connWin > maxStreamID {
			c.mu.Unlock()
			return errors.New("WINDOW_UPDATE: connection window above 2^31-1")
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		st.sendWin += int64(f.Increment)
		if st.sendWin > maxStreamID {
			c.mu.Unlock()
			c.resetStream(f.StreamID, http2.ErrCodeFlowControl,
				fmt.Errorf("h2post: stream %d: window above 2^31-1", f.StreamID))
			return nil
		}
	}
	wake := len(c.blocked) > 0
	c.mu.Unlock()
	if wake {
		c.signal()
	}
	return nil
}

// onGoAway fails the streams above the last one the server will process,
// as not processed, and takes no new streams; the others finish.
func (c *Conn) onGoAway(f *http2.GoAwayFrame) {
	// The framer reuses its buffer: the debug data must be copied.
	ga := &GoAwayError{LastStreamID: f.LastStreamID, Code: f.ErrCode, DebugData: bytes.Clone(f.DebugData())}
	c.mu.Lock()
	if c.goAwayErr == nil || len(ga.DebugData) > 0 || len(c.goAwayErr.DebugData) == 0 {
		// A graceful shutdown is two GOAWAYs; a reason in the first
		// must not be lost to a bare second.
		c.goAwayErr = ga
	}
	for id, st := range c.streams {
		if id > f.LastStreamID {
			delete(c.streams, id)
			st.state = stDone
			st.err = fmt.Errorf("h2post: stream %d above the last stream %d of the server's %w: %w",
				id, f.LastStreamID, ga, ErrNotProcessed)
			close(st.done)
			c.active--
		}
	}
	for _, st := range c.queue {
		st.state = stDone
		st.err = fmt.Errorf("h2post: connection going away (%w) before the request was sent: %w", ga, ErrNotProcessed)
		close(st.done)
		c.active--
	}
	clear(c.queue)
	c.queue = c.queue[:0]
	c.wakeAllLocked()
	closeNow := c.active == 0 && c.err == nil
	c.mu.Unlock()
	if closeNow {
		c.closeIdle()
	}
}

// healthLoop pings a connection that read nothing for an interval and fails
// it when the answer does not come within timeout.
func (c *Conn) healthLoop(interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := c.framesRead.Load()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
		}
		if n := c.framesRead.Load(); n != last {
			last = n
			continue
		}
		var d [8]byte
		_, _ = rand.Read(d[:])
		// Drop a stale ack before the PING can go out, so the wait below
		// cannot eat this PING's own ack.
		select {
		case <-c.pingAck:
		default:
		}
		c.mu.Lock()
		c.pingData, c.pingOut = d, true
		c.ctrl.ping = true
		c.mu.Unlock()
		c.signal()
		timer := time.NewTimer(timeout)
		select {
		case <-c.pingAck:
			timer.Stop()
			last = c.framesRead.Load()
		case <-timer.C:
			c.fail(fmt.Errorf("h2post: no answer to PING within %s", timeout))
			return
		case <-c.dead:
			timer.Stop()
			return
		}
	}
}
