package benchkit

import (
	"os"
	"strconv"
	"strings"
)

// UserHZ is the unit of the CPU times in /proc (USER_HZ, 100 on Linux).
const UserHZ = 100

// ProcCPU returns the user+system CPU seconds of process pid so far, read
// from /proc/<pid>/stat (0 if unknown: no such process, or pid <= 0).
func ProcCPU(pid int) float64 {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / UserHZ
}

// ProcParent returns the parent pid of process pid (0 if unknown).
func ProcParent(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// procStat returns the fields of /proc/<pid>/stat after the command name,
// which is in parentheses and may hold spaces: f[0] is the state (field 3
// of proc(5)), f[1] the parent pid, f[11] utime and f[12] stime (fields 14
// and 15). Nil if unknown.
func procStat(pid int) []string {
	if pid <= 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
