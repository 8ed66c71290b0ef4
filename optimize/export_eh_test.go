package optimize

import (
	"time"

	"github.com/caudal-go/caudal/internal/engine"
)

// Classify returns error handling's verdict on err under cfg's rules.
func Classify(cfg ErrorHandlingConfig, err error) (class string, retry bool, delay time.Duration) {
	return Classifier(cfg)(err)
}

// Classifier returns the classifier of cfg's rules, as a func.
func Classifier(cfg ErrorHandlingConfig) func(error) (class string, retry bool, delay time.Duration) {
	c := newClassifier(cfg)
	return func(err error) (string, bool, time.Duration) {
		v := c.Classify(engine.Site{}, err)
		return v.Class, v.Retry, v.Delay
	}
}

// ParseRetryAfter parses a Retry-After header's value as if the time were
// now.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	return parseRetryAfter(v, func() time.Time { return now })
}
