package version

import "testing"

func TestSemantic(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3-rc.1": "1.2.3-rc.1", "4a2d6ed": "0.1.0-4a2d6ed",
		"4a2d6ed-dirty": "0.1.0-4a2d6ed-dirty", "dev": "0.1.0-dev", "v1.2.3-4-g4a2d6ed": "1.2.3-4-g4a2d6ed",
	} {
		Version = in
		if got := Semantic(); got != want {
			t.Errorf("Semantic() of %q = %q, want %q", in, got, want)
		}
	}
}
