package main

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plot draws, per model, throughput against concurrency and p99 latency
// against throughput, one line per mode, and returns the file names
// written into dir by model.
func (r *results) plot(dir string) (map[string][]string, error) {
	out := map[string][]string{}
	modes := append(append([]string(nil), r.cfg.modes...), modeGhz)
	for _, m := range r.models {
		tp := plot.New()
		tp.Title.Text = m.name + ": throughput vs concurrency (one server core)"
		tp.X.Label.Text = "concurrency (closed loop)"
		tp.Y.Label.Text = "inferences/s"
		tp.X.Scale = plot.LogScale{}
		tp.X.Tick.Marker = plot.LogTicks{Prec: -1}
		// Log throughput too: raw ONNX Runtime on simple is orders of
		// magnitude above any server, and the modes must stay apart.
		tp.Y.Scale = plot.LogScale{}
		tp.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		// Bottom right: the curves rise to the right, and the raw line
		// runs along the top.
		tp.Legend.Top = false
		tp.Legend.Left = false

		lp := plot.New()
		lp.Title.Text = m.name + ": p99 latency vs throughput"
		lp.X.Label.Text = "inferences/s"
		lp.Y.Label.Text = "p99 latency (ms)"
		lp.Y.Scale = plot.LogScale{}
		lp.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		lp.Legend.Top = true
		lp.Legend.Left = true

		var tpArgs, lpArgs []any
		for _, mode := range modes {
			var byConc, byRate plotter.XYs
			for _, c := range r.cfg.concurrency {
				s, ok := r.get(pointKey{Model: m.name, Mode: mode, Concurrency: c})
				if !ok || s.Throughput <= 0 {
					continue
				}
				byConc = append(byConc, plotter.XY{X: float64(c), Y: s.Throughput})
				if s.P99Ms > 0 {
					byRate = append(byRate, plotter.XY{X: s.Throughput, Y: s.P99Ms})
				}
			}
			if len(byConc) > 0 {
				tpArgs = append(tpArgs, mode, byConc)
			}
			if len(byRate) > 0 {
				lpArgs = append(lpArgs, mode, byRate)
			}
		}
		// The raw baseline has no concurrency; its best rate is a
		// horizontal line, the ceiling a server on this core could reach.
		if ips := r.bestRaw(m); ips > 0 && len(r.cfg.concurrency) > 0 {
			lo, hi := float64(r.cfg.concurrency[0]), float64(r.cfg.concurrency[len(r.cfg.concurrency)-1])
			tpArgs = append(tpArgs, "raw ORT (best batch)", plotter.XYs{{X: lo, Y: ips}, {X: hi, Y: ips}})
		}
		for _, f := range []struct {
			p    *plot.Plot
			args []any
			name string
		}{{tp, tpArgs, m.name + "_throughput.png"}, {lp, lpArgs, m.name + "_p99.png"}} {
			// A log axis without data cannot be drawn.
			if len(f.args) == 0 {
				continue
			}
			if err := plotutil.AddLinePoints(f.p, f.args...); err != nil {
				return nil, fmt.Errorf("plot %s: %w", f.name, err)
			}
			if err := f.p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, f.name)); err != nil {
				return nil, fmt.Errorf("save %s: %w", f.name, err)
			}
			out[m.name] = append(out[m.name], f.name)
		}
	}
	return out, nil
}

// bestRaw is the raw baseline's highest items per second over batch sizes.
func (r *results) bestRaw(m *model) float64 {
	best := 0.0
	for _, b := range m.rawSizes {
		if s, ok := r.get(pointKey{Model: m.name, Mode: modeRaw, Batch: b}); ok {
			best = max(best, s.Throughput)
		}
	}
	return best
}
