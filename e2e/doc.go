// Package e2e holds end-to-end tests that build the real outpost binary, run
// it as separate processes and talk to it only through its HTTP API, the way
// an operator and an app would. It has no non-test code.
package e2e
