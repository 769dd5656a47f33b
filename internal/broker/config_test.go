package broker

import (
	"flag"
	"reflect"
	"testing"
)

// The zero value stands for the same defaults the flags show.
func TestZeroConfigHasTheFlagDefaults(t *testing.T) {
	var flags Config
	flags.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	if got, want := (Config{}).WithDefaults(), flags.WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("zero value with defaults:\n%+v\nflags:\n%+v", got, want)
	}
}
