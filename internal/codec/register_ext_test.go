package codec_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/codec"
)

type dupA struct{ A int }
type dupB struct{ B int }
type dupC struct{ C int }

func TestRegisterTypePanics(t *testing.T) {
	codec.RegisterType("codec_test.dupA", dupA{})
	tests := []struct {
		name    string
		regName string
		sample  any
		want    string
	}{
		{"duplicate name", "codec_test.dupA", dupB{}, `codec: RegisterType("codec_test.dupA", codec_test.dupB): name already registered for codec_test.dupA`},
		{"same type twice", "codec_test.dupA2", dupA{}, `codec: RegisterType("codec_test.dupA2", codec_test.dupA): type already registered as "codec_test.dupA"`},
		{"same type as pointer", "codec_test.dupA3", &dupA{}, `type already registered as "codec_test.dupA"`},
		{"empty name", "", dupC{}, "empty name"},
		{"nil sample", "codec_test.nil", nil, "pass a value of the type"},
		{"unnamed type", "codec_test.anon", struct{ X int }{}, "is not a named type"},
		{"pointer to pointer", "codec_test.pp", new(*dupC), "pointer to pointer"},
		{"predeclared type", "codec_test.int", 0, "is not a named type"},
		{"time.Time", "codec_test.time", time.Time{}, "codec: register time.Time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("RegisterType did not panic")
				}
				if msg := fmt.Sprint(r); !strings.Contains(msg, tc.want) {
					t.Fatalf("panic %q does not contain %q", msg, tc.want)
				}
			}()
			codec.RegisterType(tc.regName, tc.sample)
		})
	}
	// A failed registration leaves nothing behind: the name is still free.
	codec.RegisterType("codec_test.time", dupC{})
}
