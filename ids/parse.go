package ids

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ErrInvalidID reports a string that is not a well-formed ID.
var ErrInvalidID = errors.New("invalid id")

// The parts of an ID, with the same rules as outpost.Identity.Validate.
var (
	nameRE     = regexp.MustCompile(`^[A-Z0-9][A-Z0-9_]{0,31}$`)
	locationRE = regexp.MustCompile(`^[A-Z0-9]{2,8}$`)
	codeRE     = regexp.MustCompile(`^[0-9]{2}[a-z]{2}$`)
	timeRE     = regexp.MustCompile(`^[0-9]{12}$`)
)

// IDParts are the fields of an ID.
type IDParts struct {
	Name     string    // node name, e.g. EDGE01
	Location string    // location code, e.g. LHR
	Code     string    // node code, e.g. 43ax
	Random   string    // the eight characters, e.g. k3m9qz2p
	Boot     int       // boot counter modulo BootCycle, decoded from Random's first two characters
	Time     time.Time // creation time in UTC, to the second
}

// String assembles the parts back into an ID; ParseID(s).String() == s.
func (p IDParts) String() string {
	return p.Name + "-" + p.Location + "-" + p.Code + "-" + p.Random + "-" + p.Time.UTC().Format(timeLayout)
}

// ParseID splits an ID into its parts and checks each one. The error wraps
// ErrInvalidID and names the part at fault.
func ParseID(s string) (IDParts, error) {
	fields := strings.Split(s, "-")
	if len(fields) != 5 {
		return IDParts{}, fmt.Errorf("%w %q: want NAME-LOC-NNLL-XXXXXXXX-DDMMYYHHMMSS, got %d hyphen-separated parts", ErrInvalidID, s, len(fields))
	}
	p := IDParts{Name: fields[0], Location: fields[1], Code: fields[2], Random: fields[3]}
	if !nameRE.MatchString(p.Name) {
		return IDParts{}, fmt.Errorf("%w %q: name %q must be 1-32 characters of A-Z, 0-9 and _ starting with a letter or digit", ErrInvalidID, s, p.Name)
	}
	if !locationRE.MatchString(p.Location) {
		return IDParts{}, fmt.Errorf("%w %q: location %q must be 2-8 characters of A-Z and 0-9", ErrInvalidID, s, p.Location)
	}
	if !codeRE.MatchString(p.Code) {
		return IDParts{}, fmt.Errorf("%w %q: code %q must be two digits then two lowercase letters", ErrInvalidID, s, p.Code)
	}
	if err := checkRandom(p.Random); err != nil {
		return IDParts{}, fmt.Errorf("%w %q: %w", ErrInvalidID, s, err)
	}
	p.Boot, _ = decodeBoot(p.Random[0], p.Random[1])
	if !timeRE.MatchString(fields[4]) {
		return IDParts{}, fmt.Errorf("%w %q: time %q must be 12 digits DDMMYYHHMMSS", ErrInvalidID, s, fields[4])
	}
	t, err := time.Parse(timeLayout, fields[4])
	if err != nil {
		return IDParts{}, fmt.Errorf("%w %q: time %q is not a valid DDMMYYHHMMSS: %w", ErrInvalidID, s, fields[4], err)
	}
	p.Time = t.UTC()
	return p, nil
}

// checkRandom reports whether r is eight characters of Alphabet.
func checkRandom(r string) error {
	if len(r) != 8 {
		return fmt.Errorf("random part %q must be 8 characters, not %d", r, len(r))
	}
	for i := range len(r) {
		if alphabetIndex[r[i]] < 0 {
			return fmt.Errorf("random part %q has %q, which is not in %s", r, r[i], Alphabet)
		}
	}
	return nil
}
