package testenv

import (
	"os/exec"
	"testing"
)

// CPULoad runs n busy loops (`sh -c 'while :; do :; done'`) as child
// processes beside the test, the way other work loads a shared machine, so
// that races which need a scheduling delay to show do show. Each is killed
// by its own pid when the test ends.
func CPULoad(t testing.TB, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a busy loop: %v", err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
}
