package testutil

import "os/exec"

// Chromium returns the path of a local Chromium or Chrome (Debian's
// `chromium` package, which .ci/run installs), or "" when there is none:
// the browser tests then skip with a line saying how to install one.
func Chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}
