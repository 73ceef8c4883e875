package graph

import "strings"

// Flags is a set of Envoy response flags carried as error evidence.
type Flags uint32

// Envoy response flags, in the short form Istio reports in response_flags.
var flagNames = []string{
	"UH", "UF", "UO", "NR", "URX", "NC", "DT", "UC", "UT", "LH", "LR", "RL",
	"UAEX", "RLSE", "DC", "IH", "SI", "DPE", "UPE", "UMSDR", "OM", "DF", "DI", "FI",
}

// ParseFlags parses Istio's response_flags label ("UF,URX" or "-").
func ParseFlags(s string) Flags {
	var f Flags
	if s == "" || s == "-" {
		return 0
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		for i, n := range flagNames {
			if n == part {
				f |= 1 << i
				break
			}
		}
	}
	return f
}

// Names lists the flags in f.
func (f Flags) Names() []string {
	var out []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	return strings.Join(f.Names(), ",")
}
