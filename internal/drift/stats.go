package drift

import "math"

// Smoothing is the share added to every bin before PSI's logarithms, so an
// empty bin gives a large but finite value: p ← (p + ε) / (1 + kε) over k
// bins.
const Smoothing = 1e-4

// Stats compares a window's binned distribution with the reference's. All
// three are computed on the bins, not on raw values.
type Stats struct {
	// PSI is the population stability index Σ (q−p)·ln(q/p) over the
	// smoothed bin shares p (reference) and q (window).
	PSI float64 `json:"psi"`
	// JS is the Jensen–Shannon distance, the square root of the
	// Jensen–Shannon divergence in bits: 0 for equal, 1 for disjoint.
	JS float64 `json:"js"`
	// KS is the Kolmogorov–Smirnov statistic on the bins: the largest
	// difference of the cumulative bin shares.
	KS float64 `json:"ks"`
}

// Stat names one of the statistics, as the alert and the metric label
// name them.
type Stat string

// The statistics.
const (
	StatPSI Stat = "psi"
	StatJS  Stat = "js"
	StatKS  Stat = "ks"
)

// Of returns the named statistic.
func (s Stats) Of(st Stat) float64 {
	switch st {
	case StatJS:
		return s.JS
	case StatKS:
		return s.KS
	}
	return s.PSI
}

// Compare computes the statistics of window counts against reference
// shares ref (same bins). With no counts it returns zeros.
func Compare(ref []float64, counts []int64) Stats {
	total := int64(0)
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(ref) != len(counts) {
		return Stats{}
	}
	k := float64(len(ref))
	var st Stats
	var cp, cq, js float64
	for i, p := range ref {
		q := float64(counts[i]) / float64(total)
		ps, qs := (p+Smoothing)/(1+k*Smoothing), (q+Smoothing)/(1+k*Smoothing)
		st.PSI += (qs - ps) * math.Log(qs/ps)
		m := (p + q) / 2
		if p > 0 {
			js += p * math.Log2(p/m) / 2
		}
		if q > 0 {
			js += q * math.Log2(q/m) / 2
		}
		cp += p
		cq += q
		st.KS = max(st.KS, math.Abs(cp-cq))
	}
	st.JS = math.Sqrt(max(js, 0))
	return st
}
