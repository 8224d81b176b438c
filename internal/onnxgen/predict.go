package onnxgen

import (
	"math"
	"math/rand/v2"
)

// ClassifierPredict returns the class Classifier(seed) predicts for one
// row of features: the same weights, drawn in the same order, run in Go.
// It computes in float64 from the float32 weights, so on a near tie it may
// disagree with ONNX Runtime's float32 arithmetic; the bundled labelled
// data set uses it to make its ground truth, not to score the server.
func ClassifierPredict(seed int64, x []float32) int {
	src := rand.NewPCG(uint64(seed), classifierStream)
	w1, b1 := dense(src, ClassifierFeatures, ClassifierHidden)
	w2, b2 := dense(src, ClassifierHidden, ClassifierClasses)
	hidden := make([]float64, ClassifierHidden)
	for j := range hidden {
		s := float64(b1[j])
		for i := range ClassifierFeatures {
			s += float64(x[i]) * float64(w1[i*ClassifierHidden+j])
		}
		hidden[j] = math.Max(s, 0)
	}
	best, arg := math.Inf(-1), 0
	for k := range ClassifierClasses {
		s := float64(b2[k])
		for j := range hidden {
			s += hidden[j] * float64(w2[j*ClassifierClasses+k])
		}
		if s > best {
			best, arg = s, k
		}
	}
	return arg
}

// dense draws one layer's weights [in, out] and bias [out] as addDense does.
func dense(src *rand.PCG, in, out int) (w, b []float32) {
	limit := math.Sqrt(6 / float64(in+out))
	w = make([]float32, in*out)
	for i := range w {
		w[i] = uniform(src, limit)
	}
	b = make([]float32, out)
	for i := range b {
		b[i] = uniform(src, 0.1)
	}
	return w, b
}
