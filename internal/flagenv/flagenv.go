// Package flagenv fills a flag.FlagSet from the command line and the environment.
//
// Precedence: a flag given on the command line wins, then the environment
// variable PREFIX_NAME (the flag name upper-cased, '.' and '-' turned into '_'),
// then the flag's default. Values of type *Secret are redacted when logged.
package flagenv

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// EnvName returns the environment variable that sets flag name:
// EnvName("ZAITS", "kafka.brokers") == "ZAITS_KAFKA_BROKERS".
func EnvName(prefix, name string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return prefix + "_" + strings.ToUpper(r.Replace(name))
}

// Parse parses args into fs and then applies environment variables to the
// flags that were not set on the command line.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		env := EnvName(prefix, f.Name)
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment variable %s=%q: %w", env, v, e)
		}
	})
	return err
}

// Secret is a string flag whose value never appears in logs.
type Secret string

// String implements flag.Value.
func (s *Secret) String() string {
	if s == nil {
		return ""
	}
	return string(*s)
}

// Set implements flag.Value.
func (s *Secret) Set(v string) error { *s = Secret(v); return nil }

// LogValue implements slog.LogValuer: a set secret logs as "[redacted]".
func (s Secret) LogValue() slog.Value {
	if s == "" {
		return slog.StringValue("")
	}
	return slog.StringValue("[redacted]")
}

// LogValue returns every flag of fs as one slog group, secrets redacted,
// for the single configuration line each component logs at start-up.
func LogValue(fs *flag.FlagSet) slog.Value {
	var attrs []slog.Attr
	fs.VisitAll(func(f *flag.Flag) {
		if s, ok := f.Value.(*Secret); ok {
			attrs = append(attrs, slog.Any(f.Name, *s))
			return
		}
		attrs = append(attrs, slog.String(f.Name, f.Value.String()))
	})
	return slog.GroupValue(attrs...)
}

// Default sets *v to def when *v is its type's zero value. Each config's
// withDefaults calls it once per field: the one place a default is written,
// read both by RegisterFlags (as the flags' defaults) and by the
// constructors (a zero field means its default).
func Default[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// OffFloat64 registers a float64 flag for a config field whose zero value
// means its default def (so that a zero config is safe): the flag's default
// is def, and 0 or less on the command line turns the feature off, stored
// as -1.
func OffFloat64(fs *flag.FlagSet, p *float64, name string, def float64, usage string) {
	*p = def
	fs.Var(offFloat{p}, name, usage)
}

type offFloat struct{ p *float64 }

func (o offFloat) String() string {
	if o.p == nil {
		return ""
	}
	return strconv.FormatFloat(max(*o.p, 0), 'g', -1, 64)
}

func (o offFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	if v <= 0 {
		v = -1
	}
	*o.p = v
	return nil
}

// OffDuration is OffFloat64 for a duration: 0 or less turns it off (-1ns).
func OffDuration(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(offDuration{p}, name, usage)
}

type offDuration struct{ p *time.Duration }

func (o offDuration) String() string {
	if o.p == nil {
		return ""
	}
	return max(*o.p, 0).String()
}

func (o offDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		v = -1
	}
	*o.p = v
	return nil
}

// OffInt is OffFloat64 for an int: 0 or less turns it off (-1).
func OffInt(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	*p = def
	fs.Var(offInt{p}, name, usage)
}

type offInt struct{ p *int }

func (o offInt) String() string {
	if o.p == nil {
		return ""
	}
	return strconv.Itoa(max(*o.p, 0))
}

func (o offInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		v = -1
	}
	*o.p = v
	return nil
}
