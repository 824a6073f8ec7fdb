// Package failpoint lets fault-injection tests stop the library at a named
// point, for example between the store write and the publish of a Submit.
// Every failpoint is off unless a test or a test binary enables it; an off
// failpoint costs one atomic load.
package failpoint

import (
	"sync"
	"sync/atomic"
)

// The failpoints.
const (
	// SubmitAfterStore is reached after Submit has stored its tasks and
	// before it publishes them.
	SubmitAfterStore = "submit-after-store"
	// WorkerBeforeFinish is reached after a handler returned and before
	// the worker stores the attempt's outcome (and settles its message).
	WorkerBeforeFinish = "worker-before-finish"
)

var (
	enabled atomic.Bool
	mu      sync.Mutex
	hooks   = map[string]func(){}
)

// Enable makes Inject(name) call fn. fn may exit the process, block, or
// panic, as the test needs.
func Enable(name string, fn func()) {
	mu.Lock()
	defer mu.Unlock()
	hooks[name] = fn
	enabled.Store(true)
}

// Disable turns the failpoint off.
func Disable(name string) {
	mu.Lock()
	defer mu.Unlock()
	delete(hooks, name)
	enabled.Store(len(hooks) > 0)
}

// Inject runs the hook enabled for name, if any.
func Inject(name string) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	fn := hooks[name]
	mu.Unlock()
	if fn != nil {
		fn()
	}
}
