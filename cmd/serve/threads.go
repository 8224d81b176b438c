package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/serving"
)

// ortLoader joins ONNX Runtime to the serving core. A version whose
// config.yaml sets no intra_op_threads gets its share of the CPUs from
// threads, and its spinning default from the same division unless
// instances.allow_spinning says otherwise.
type ortLoader struct {
	threads *runtime.ThreadBudget
	log     *zap.Logger
}

// offlineLoader is the loader of the offline commands: the server's own,
// dividing the CPUs this process may use among the sessions it opens.
func offlineLoader() *ortLoader {
	return &ortLoader{threads: runtime.NewThreadBudget(runtime.AvailableCPUs()), log: zap.NewNop()}
}

func (l *ortLoader) Load(_ context.Context, path string, in repository.Instances) (serving.Model, error) {
	opts, release := l.options(path, in)
	s, err := runtime.Load(path, opts)
	if err != nil {
		release()
		return nil, err
	}
	l.log.Info("session threads", zap.String("path", path), zap.Int("intra_op_threads", opts.IntraOpThreads),
		zap.Bool("allow_spinning", *opts.AllowSpinning), zap.Int("instances", max(in.Count, 1)), zap.Int("cpus", l.threads.CPUs()))
	return &budgetedSession{Session: s, release: release}, nil
}

// options are the session options of one version; release gives its
// share back.
func (l *ortLoader) options(path string, in repository.Instances) (runtime.Options, func()) {
	share, release := l.threads.Acquire(path, in.Count)
	opts := runtime.Options{Provider: in.Provider, DeviceID: in.DeviceID, IntraOpThreads: in.IntraOpThreads,
		InterOpThreads: in.InterOpThreads, GraphOptimization: in.GraphOptimization, AllowSpinning: in.AllowSpinning}
	if opts.IntraOpThreads == 0 {
		opts.IntraOpThreads = share.IntraOpThreads
	}
	if opts.AllowSpinning == nil {
		opts.AllowSpinning = &share.AllowSpinning
	}
	return opts, release
}

// budgetedSession gives its thread share back when it is closed.
type budgetedSession struct {
	*runtime.Session
	release func()
}

func (s *budgetedSession) Close() error {
	err := s.Session.Close()
	s.release()
	return err
}

// instanceSlots counts the instances of every version snap's policies
// select: the sessions the server will hold once it has applied snap.
func instanceSlots(snap repository.Snapshot) int {
	n := 0
	for _, m := range snap.Models {
		if m.Err == nil {
			n += len(m.Selected) * max(m.Config.Instances.Count, 1)
		}
	}
	return n
}

// planThreads divides the CPUs among the instances snap asks for.
func (a *app) planThreads(snap repository.Snapshot) {
	slots := instanceSlots(snap)
	a.threads.Plan(slots)
	a.log.Debug("thread division", zap.Int("cpus", a.threads.CPUs()), zap.Int("instances", slots))
}
