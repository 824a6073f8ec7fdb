package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// cpuUse is CPU time used so far by this process, the Redis server and the
// RabbitMQ server (beam.smp). The servers are shared with whatever else
// runs on the machine, so their figures are upper bounds.
type cpuUse struct {
	self, redis, rabbit time.Duration
}

func (c cpuUse) sub(o cpuUse) cpuUse {
	return cpuUse{c.self - o.self, c.redis - o.redis, c.rabbit - o.rabbit}
}

// perTask returns d per task of n, in microseconds.
func perTask(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

func readCPU(ctx context.Context, cfg *config) cpuUse {
	var u cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr})
	if info, err := rdb.Info(ctx, "cpu").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				u.redis += time.Duration(f * float64(time.Second))
			}
		}
	}
	_ = rdb.Close()
	u.rabbit = procCPU("beam.smp")
	return u
}

// procCPU sums user and system time of the processes named comm.
func procCPU(comm string) time.Duration {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var total time.Duration
	for _, d := range dirs {
		c, err := os.ReadFile(d + "/comm")
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		st, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+2:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		stt, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+stt) * time.Second / 100 // USER_HZ
	}
	return total
}
