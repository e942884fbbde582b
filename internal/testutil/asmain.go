package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// asMain, set in a test binary's environment, makes it run the command's
// main instead of its tests.
const asMain = "LLMWORKER_TEST_AS_MAIN"

// RunMain is the TestMain of a command's tests: the test binary doubles as
// the command, running main when MainCmd started it, and the tests
// otherwise.
func RunMain(m *testing.M, main func()) {
	if os.Getenv(asMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// MainCmd is the command whose tests are running, as a process of its own
// (the test binary, through RunMain) with args.
func MainCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	return cmd
}
