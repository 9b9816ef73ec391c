package main

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Log field names are fixed across the product (see STYLE.md): cluster,
// endpoint, route, topic, partition, saga_id. The ones the command adds:
const (
	fieldListener   = "listener"
	fieldAddress    = "address"
	fieldGeneration = "generation"
	fieldConfig     = "config"
)

// newLogger builds the process logger writing to w. format is "json" or
// "console"; level is held in an AtomicLevel so that a reload can change it.
func newLogger(w io.Writer, format string, level zap.AtomicLevel) (*zap.Logger, error) {
	ec := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "",
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.ISO8601TimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	}
	var enc zapcore.Encoder
	switch format {
	case "", "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		if f, ok := w.(*os.File); !ok || !isTerminal(f) {
			ec.EncodeLevel = zapcore.CapitalLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("log format must be json or console, got %q", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(os.Stderr)))), nil
}

// parseLevel maps "debug", "info", "warn", "error" ("" = info).
func parseLevel(s string) (zapcore.Level, error) {
	if s == "" {
		return zapcore.InfoLevel, nil
	}
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// isTerminal reports whether f is a character device (a terminal), to decide
// on colour.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
