//go:build linux && (amd64 || arm64)

package chain

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// asyncSyncer runs a file's fsync through Linux AIO (IOCB_CMD_FSYNC, in
// the kernel since 4.18): io_submit queues the fsync and returns at once;
// the kernel signals an eventfd when the fsync is complete, and the
// goroutine waits for that through the runtime's poller, holding no
// scheduler slot; io_getevents then collects the fsync's result. When the
// kernel lacks any of it (io_setup refused, as under some seccomp
// profiles, or the opcode unknown), files fall back to a plain fsync.
type asyncSyncer struct {
	f    *os.File
	mu   sync.Mutex // one fsync at a time (raft-wal issues them one by one)
	slot *aioSlot   // nil: plain fsync
}

// aioSlot is an AIO context for one request at a time and the eventfd it
// signals. Destroying a context waits for the kernel (tens of ms), so
// slots are kept for reuse instead (aioSlots), as many as WAL files were
// ever open at once.
type aioSlot struct {
	ctx   uintptr  // aio_context_t
	event *os.File // the eventfd, read through the poller
	efd   int      // its descriptor (os.File.Fd would make it blocking)
}

var (
	aioSlots struct {
		sync.Mutex
		free []*aioSlot
	}
	aioUnsupported atomic.Bool // the kernel refused: plain fsyncs from then on
)

func getAIOSlot() *aioSlot {
	if aioUnsupported.Load() {
		return nil
	}
	aioSlots.Lock()
	if n := len(aioSlots.free); n > 0 {
		s := aioSlots.free[n-1]
		aioSlots.free = aioSlots.free[:n-1]
		aioSlots.Unlock()
		return s
	}
	aioSlots.Unlock()
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		if e == unix.ENOSYS || e == unix.EPERM || e == unix.EINVAL {
			aioUnsupported.Store(true)
		}
		return nil
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Syscall(unix.SYS_IO_DESTROY, ctx, 0, 0)
		return nil
	}
	return &aioSlot{ctx: ctx, event: os.NewFile(uintptr(efd), "wal-fsync-event"), efd: efd}
}

// destroy releases the slot's context (waiting for any request in it)
// and eventfd.
func (s *aioSlot) destroy() {
	unix.Syscall(unix.SYS_IO_DESTROY, s.ctx, 0, 0)
	s.event.Close()
}

func putAIOSlot(s *aioSlot) {
	aioSlots.Lock()
	aioSlots.free = append(aioSlots.free, s)
	aioSlots.Unlock()
}

// iocb and ioEvent are the kernel's struct iocb and struct io_event
// (include/uapi/linux/aio_abi.h) on 64-bit little-endian machines.
type iocb struct {
	_      uint64 // aio_data
	_      uint32 // aio_key
	_      uint32 // aio_rw_flags
	opcode uint16
	_      int16 // aio_reqprio
	fildes uint32
	_      uint64 // aio_buf
	_      uint64 // aio_nbytes
	_      int64  // aio_offset
	_      uint64 // aio_reserved2
	flags  uint32
	resfd  uint32
}

type ioEvent struct {
	_   uint64 // data
	_   uint64 // obj
	res int64
	_   int64 // res2
}

// The kernel's sizes: 64 and 32 bytes.
var (
	_ [64]byte = [unsafe.Sizeof(iocb{})]byte{}
	_ [32]byte = [unsafe.Sizeof(ioEvent{})]byte{}
)

const (
	iocbCmdFsync = 2 // IOCB_CMD_FSYNC
	iocbFlagRes  = 1 // IOCB_FLAG_RESFD: signal aio_resfd on completion
)

func newAsyncSyncer(f *os.File) *asyncSyncer {
	return &asyncSyncer{f: f, slot: getAIOSlot()}
}

func (s *asyncSyncer) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slot == nil {
		return s.f.Sync()
	}
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var submitErr syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		cb := &iocb{opcode: iocbCmdFsync, fildes: uint32(fd), flags: iocbFlagRes, resfd: uint32(s.slot.efd)}
		for {
			n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, s.slot.ctx, 1, uintptr(unsafe.Pointer(&cb)))
			if e == unix.EINTR {
				continue
			}
			if e == 0 && n != 1 {
				e = unix.EIO
			}
			submitErr = e
			return
		}
	}); err != nil {
		return err
	}
	switch submitErr {
	case 0:
	case unix.EAGAIN:
		return s.f.Sync() // the kernel is short of AIO resources: fsync as usual this time
	default:
		// This kernel, file system or seccomp profile cannot (EINVAL,
		// ENOSYS, EOPNOTSUPP, EPERM, ...): nothing was queued, so fsync as
		// usual from now on.
		aioUnsupported.Store(true)
		putAIOSlot(s.slot) // nothing was queued on it
		s.slot = nil
		return s.f.Sync()
	}
	// The fsync is queued. Wait for the eventfd through the poller; if it
	// cannot be read, io_getevents still waits, only holding the slot.
	var buf [8]byte
	_, _ = s.slot.event.Read(buf[:])
	var ev ioEvent
	for {
		n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, s.slot.ctx, 1, 1, uintptr(unsafe.Pointer(&ev)), 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e == 0 && n != 1 {
			e = unix.EIO
		}
		if e != 0 {
			// Its state is unknown: never reuse it. Destroying it waits for
			// the kernel, so not here.
			go s.slot.destroy()
			s.slot = nil
			return &os.PathError{Op: "io_getevents fsync", Path: s.f.Name(), Err: e}
		}
		break
	}
	if ev.res < 0 {
		return &os.PathError{Op: "fsync", Path: s.f.Name(), Err: syscall.Errno(-ev.res)}
	}
	return nil
}

// close gives the slot back for the next file.
func (s *asyncSyncer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slot != nil {
		putAIOSlot(s.slot)
		s.slot = nil
	}
}
