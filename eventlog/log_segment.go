package eventlog

import "github.com/outrigger-mesh/outrigger/eventlog/segment"

// openLog opens one partition's log.
func openLog(dir string, o segment.Options) (partitionLog, error) {
	l, err := segment.Open(dir, o)
	if err != nil {
		return nil, err
	}
	return l, nil
}

var _ partitionLog = (*segment.Log)(nil)
