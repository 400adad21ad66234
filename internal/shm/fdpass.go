package shm

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// SendFDs sends descriptors over a Unix socket (SCM_RIGHTS) with a short
// message that tells the receiver what they are.
func SendFDs(c *net.UnixConn, msg []byte, fds ...int) error {
	if len(msg) == 0 {
		msg = []byte{0} // at least one byte must travel with the rights
	}
	n, oobn, err := c.WriteMsgUnix(msg, unix.UnixRights(fds...), nil)
	if err != nil {
		return fmt.Errorf("shm: send descriptors: %w", err)
	}
	if n != len(msg) || oobn == 0 {
		return fmt.Errorf("shm: send descriptors: short write (%d of %d bytes)", n, len(msg))
	}
	return nil
}

// RecvFDs receives up to max descriptors sent by SendFDs, with their
// message. The caller owns the descriptors.
func RecvFDs(c *net.UnixConn, max int) (msg []byte, fds []int, err error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*max))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, fmt.Errorf("shm: receive descriptors: %w", err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, fmt.Errorf("shm: receive descriptors: %w", err)
	}
	for _, m := range cmsgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range got {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	if flags&unix.MSG_CTRUNC != 0 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, nil, fmt.Errorf("shm: receive descriptors: more than %d sent", max)
	}
	return buf[:n], fds, nil
}
