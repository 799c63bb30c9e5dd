package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Helpers shared by the gateway and generic JSON parsers.

var (
	errBadTimeValue = errors.New("time is neither RFC 3339 nor a Unix time number")
	errBadPortValue = errors.New("port is not a number in 0-65535")
)

// parseTimeString parses an RFC 3339 string, or with layout (non-empty)
// time.ParseInLocation in loc. A string of digits is taken as a Unix time
// number, as some producers quote them.
func parseTimeString(s, layout string, loc *time.Location) (time.Time, error) {
	if layout != "" {
		return time.ParseInLocation(layout, s, loc)
	}
	if t, n, ok := parseRFC3339(s); ok && n == len(s) {
		return t, nil
	}
	if s != "" && s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:T ") {
		return parseUnixNumber(s)
	}
	return time.Time{}, errBadTimeValue
}

// parseUnixNumber parses a Unix time as a decimal number, telling the unit
// from the magnitude: seconds below 1e11 (until year 5138), then
// milliseconds, microseconds below 1e17 and nanoseconds. Seconds may have a
// fraction.
func parseUnixNumber(s string) (time.Time, error) {
	intPart, _, hasFrac := strings.Cut(s, ".")
	n, err := strconv.ParseUint(intPart, 10, 64)
	if err != nil || strings.ContainsAny(s, "eE") {
		// 1.7e9 and other float spellings.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f < 0 || f >= 1e11 || math.IsNaN(f) {
			return time.Time{}, errBadTimeValue
		}
		sec, fr := math.Modf(f)
		return time.Unix(int64(sec), int64(fr*1e9)).UTC(), nil
	}
	switch {
	case n < 1e11:
		ns, end := 0, 0
		if hasFrac {
			if ns, end = parseFraction(s, len(intPart)); end != len(s) {
				return time.Time{}, errBadTimeValue
			}
		}
		return time.Unix(int64(n), int64(ns)).UTC(), nil
	case hasFrac:
		return time.Time{}, errBadTimeValue
	case n < 1e14:
		return time.UnixMilli(int64(n)).UTC(), nil
	case n < 1e17:
		return time.UnixMicro(int64(n)).UTC(), nil
	case n <= math.MaxInt64:
		return time.Unix(0, int64(n)).UTC(), nil
	}
	return time.Time{}, errBadTimeValue
}

// rawTime parses a JSON time value: a string (see parseTimeString) or a
// number (see parseUnixNumber). absent is true for a missing or null value.
func rawTime(raw json.RawMessage, layout string, loc *time.Location) (t time.Time, absent bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, true, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, false, err
		}
		if s == "" {
			return time.Time{}, true, nil
		}
		t, err := parseTimeString(s, layout, loc)
		return t, false, err
	}
	t, err = parseUnixNumber(string(raw))
	return t, false, err
}

// rawPort parses a JSON port: a number or a numeric string.
func rawPort(raw json.RawMessage) (uint16, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return 0, nil
	}
	if raw[0] == '"' && len(raw) >= 2 {
		raw = raw[1 : len(raw)-1]
	}
	p, ok := parsePort(raw)
	if !ok {
		return 0, errBadPortValue
	}
	return p, nil
}

// Default outcome words, compared without case.
var (
	defaultSuccessValues = []string{"success", "ok", "allowed", "accepted"}
	defaultFailureValues = []string{"failure", "failed", "error"}
	defaultDeniedValues  = []string{"denied", "forbidden", "rejected"}
)
