//go:build wasip1

package guest

import (
	"unsafe"

	"github.com/accelnode/accelnode/hostfn/abi"
)

//go:wasmimport accel call_input
func callInput(buf unsafe.Pointer, bufLen uint32, outLen *uint32) uint32

//go:wasmimport accel call_reply
func callReply(buf unsafe.Pointer, bufLen uint32) uint32

// CallInput returns the payload of the actor call in progress: in a method
// of a reactor guest (an exported function the node calls), the bytes the
// client sent. Outside an actor call it fails with abi.EUNSUPPORTED.
func CallInput() ([]byte, error) {
	buf := make([]byte, 256)
	for {
		mu.Lock()
		errno := abi.Errno(callInput(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)), &scratch.length))
		n := scratch.length
		mu.Unlock()
		switch errno {
		case abi.OK:
			return buf[:n], nil
		case abi.ETOOSMALL:
			buf = make([]byte, n)
		default:
			return nil, check("call_input", uint32(errno))
		}
	}
}

// Reply sets the reply of the actor call in progress, replacing any
// earlier one; a method that sets none replies with no bytes. A reply over
// 16 MiB fails with abi.ELIMIT.
func Reply(b []byte) error {
	return check("call_reply", callReply(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))))
}
