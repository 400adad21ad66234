package benchmarks

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/goray/goray/internal/reexec"
)

// roleUnixEcho echoes length-prefixed frames on a Unix stream socket.
// Args: the socket path to listen on.
const roleUnixEcho = "benchmarks.unix-echo"

func init() { reexec.Register(roleUnixEcho, peerRole(roleUnixEcho, unixEchoMain)) }

// Frames on the raw socket: a 4-byte little-endian length, then the bytes.
const frameHdr = 4

// sockDir makes a private directory for a peer's socket; the caller
// removes it.
func sockDir() (string, error) {
	dir, err := os.MkdirTemp("", "goray-bench-")
	if err != nil {
		return "", fmt.Errorf("socket directory: %w", err)
	}
	return dir, nil
}

// unixConn is the raw-socket baseline: one write per frame (header and
// payload together) and buffered reads, as a careful user writes it.
type unixConn struct {
	dir   string
	conn  net.Conn
	rd    *bufio.Reader
	frame []byte // header + message, reused
	reply []byte
	peer  *peer
}

func openUnix(ctx context.Context, size int) (rt roundTripper, err error) {
	c := &unixConn{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.dir, err = sockDir(); err != nil {
		return nil, err
	}
	path := filepath.Join(c.dir, "echo.sock")
	if c.peer, err = startPeer(roleUnixEcho, path); err != nil {
		return nil, err
	}
	if _, err = c.peer.expect("ready", peerStartTimeout); err != nil {
		return nil, err
	}
	var d net.Dialer
	if c.conn, err = d.DialContext(ctx, "unix", path); err != nil {
		return nil, err
	}
	c.rd = bufio.NewReaderSize(c.conn, 64<<10)
	c.frame = make([]byte, frameHdr+size)
	c.reply = make([]byte, size)
	return c, nil
}

func (c *unixConn) RoundTrip(_ context.Context, msg []byte, got func([]byte)) error {
	binary.LittleEndian.PutUint32(c.frame, uint32(len(msg)))
	copy(c.frame[frameHdr:], msg)
	if _, err := c.conn.Write(c.frame[:frameHdr+len(msg)]); err != nil {
		return err
	}
	var hdr [frameHdr]byte
	if _, err := io.ReadFull(c.rd, hdr[:]); err != nil {
		return err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n > len(c.reply) {
		return fmt.Errorf("reply frame of %d bytes, want at most %d", n, len(c.reply))
	}
	if _, err := io.ReadFull(c.rd, c.reply[:n]); err != nil {
		return err
	}
	got(c.reply[:n])
	return nil
}

func (c *unixConn) Close() error {
	var err error
	if c.conn != nil {
		c.conn.Close()
	}
	if c.peer != nil {
		err = c.peer.stop()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	return err
}

// maxUnixFrame bounds the frames the echo peer accepts.
const maxUnixFrame = 64 << 20

func unixEchoMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want 1 argument (the socket path), got %q", args)
	}
	ln, err := net.Listen("unix", args[0])
	if err != nil {
		return err
	}
	defer ln.Close()
	say("ready")
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	rd := bufio.NewReaderSize(conn, 64<<10)
	var frame []byte
	for {
		var hdr [frameHdr]byte
		if _, err := io.ReadFull(rd, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := int(binary.LittleEndian.Uint32(hdr[:]))
		if n > maxUnixFrame {
			return fmt.Errorf("frame of %d bytes, more than %d", n, maxUnixFrame)
		}
		if cap(frame) < frameHdr+n {
			frame = make([]byte, frameHdr+n)
		}
		frame = frame[:frameHdr+n]
		copy(frame, hdr[:])
		if _, err := io.ReadFull(rd, frame[frameHdr:]); err != nil {
			return err
		}
		if _, err := conn.Write(frame); err != nil {
			return err
		}
	}
}
