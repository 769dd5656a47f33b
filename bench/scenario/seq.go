package scenario

import "sync/atomic"

// atomicSeq hands out 0, 1, 2, … to concurrent workers.
type atomicSeq struct{ n atomic.Int64 }

func (s *atomicSeq) next() int64 { return s.n.Add(1) - 1 }
