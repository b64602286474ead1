package contenthash

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileStat is the part of an lstat the selection and the stat cache use, kept by value so the
// walk allocates no os.FileInfo per file.
type fileStat struct {
	mode         fs.FileMode
	size         int64
	mtime, ctime int64 // ns
	ino, dev     uint64
	nlink        uint64
	uid, gid     uint32
}

func (st *fileStat) sig() statSig {
	return statSig{
		Size: st.size, MtimeNs: st.mtime, CtimeNs: st.ctime, Ino: st.ino, Dev: st.dev,
		Mode: uint32(st.mode), UID: st.uid, GID: st.gid,
	}
}

// statFromInfo takes what it needs from an os.Lstat result.
func statFromInfo(fi fs.FileInfo) fileStat {
	st := fileStat{mode: fi.Mode(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.mtime = sys.Mtim.Sec*1e9 + sys.Mtim.Nsec
		st.ctime = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
		st.ino, st.dev, st.nlink = sys.Ino, uint64(sys.Dev), uint64(sys.Nlink)
		st.uid, st.gid = sys.Uid, sys.Gid
	}
	return st
}

// statFromUnix converts a raw fstatat result the way os.Lstat does (os's fillFileStatFromSys).
func statFromUnix(sys *unix.Stat_t) fileStat {
	mode := fs.FileMode(sys.Mode & 0o777)
	switch sys.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if sys.Mode&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if sys.Mode&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if sys.Mode&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return fileStat{
		mode: mode, size: sys.Size,
		mtime: sys.Mtim.Sec*1e9 + sys.Mtim.Nsec, ctime: sys.Ctim.Sec*1e9 + sys.Ctim.Nsec,
		ino: sys.Ino, dev: sys.Dev, nlink: uint64(sys.Nlink), uid: sys.Uid, gid: sys.Gid,
	}
}
