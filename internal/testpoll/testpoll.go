// Package testpoll waits in tests for a condition without sleeping blindly.
package testpoll

import (
	"fmt"
	"testing"
	"time"
)

// Until calls cond every tick until it is true, and fails the test when waitFor
// passes first. It runs cond in the test's goroutine, so a require inside cond fails
// the test at once (require.Eventually runs it in another goroutine, where a failure
// only shows after the whole wait). msgAndArgs are a format and its arguments.
func Until(t testing.TB, cond func() bool, waitFor, tick time.Duration, msgAndArgs ...any) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			msg := "condition not met"
			if len(msgAndArgs) > 0 {
				format, _ := msgAndArgs[0].(string)
				msg = fmt.Sprintf(format, msgAndArgs[1:]...)
			}
			t.Fatalf("after %v: %s", waitFor, msg)
		}
		time.Sleep(tick)
	}
}
