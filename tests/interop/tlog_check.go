// tlog_check checks a log written as C2SP tlog-tiles with golang.org/x/mod/sumdb/tlog,
// the Go checksum database's own tile code, as an independent reader of the ledger.
//
//	tlog_check VERIFIER_KEY DIR [OLD_CHECKPOINT_FILE]
//
// It verifies DIR/checkpoint with sumdb/note (cosignature lines are signatures by keys it
// does not know, which note ignores), reads tiles through tlog.TileHashReader (which
// authenticates every tile against the checkpoint's root), recomputes the tree hash,
// and for every entry of the entry bundles checks RecordHash(entry) with a record proof.
// With OLD_CHECKPOINT_FILE it also proves the old tree is a prefix of the new one.
// sumdb names tiles tile/8/<L>/<N> and tile/8/data/<N>; C2SP names them tile/<L>/<N>
// and tile/entries/<N>: the reader maps the paths.
//
// Prints "ok <size> <entries>" and exits 0, or prints the library's error and exits 1.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return 8 }

func (d dirTiles) path(t tlog.Tile) string {
	p := t.Path() // tile/8/L/... or tile/8/data/...
	p = strings.Replace(p, "tile/8/data/", "tile/entries/", 1)
	p = strings.Replace(p, "tile/8/", "tile/", 1)
	return filepath.Join(d.dir, filepath.FromSlash(p))
}

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(d.path(t))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func tree(vkey string, file string) tlog.Tree {
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg, err := os.ReadFile(file)
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint: too few lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		fail("checkpoint root: not a base64 SHA-256")
	}
	var root tlog.Hash
	copy(root[:], raw)
	return tlog.Tree{N: size, Hash: root}
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: tlog_check VERIFIER_KEY DIR [OLD_CHECKPOINT_FILE]")
		os.Exit(2)
	}
	d := dirTiles{os.Args[2]}
	t := tree(os.Args[1], filepath.Join(d.dir, "checkpoint"))
	hr := tlog.TileHashReader(t, d)
	h, err := tlog.TreeHash(t.N, hr)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if h != t.Hash {
		fail("tree hash %v is not the checkpoint's root %v", h, t.Hash)
	}
	entries := int64(0)
	for _, tile := range tlog.NewTiles(8, 0, t.N) {
		if tile.L != 0 || (tile.W < 256 && int64(tile.W) != t.N%256) {
			continue // NewTiles lists every partial width up to the tree's: read the tree's own
		}
		tile.L = -1
		data, err := os.ReadFile(d.path(tile))
		if err != nil {
			fail("entry bundle: %v", err)
		}
		for j := 0; j < tile.W; j++ {
			if len(data) < 2 {
				fail("entry bundle %s ends early", d.path(tile))
			}
			n := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+n {
				fail("entry bundle %s ends inside an entry", d.path(tile))
			}
			entry := data[2 : 2+n]
			data = data[2+n:]
			index := tile.N*256 + int64(j)
			proof, err := tlog.ProveRecord(t.N, index, hr)
			if err != nil {
				fail("record proof %d: %v", index, err)
			}
			if err := tlog.CheckRecord(proof, t.N, t.Hash, index, tlog.RecordHash(entry)); err != nil {
				fail("entry %d: %v", index, err)
			}
			entries++
		}
		if len(data) != 0 {
			fail("entry bundle %s holds more than %d entries", d.path(tile), tile.W)
		}
	}
	if entries != t.N {
		fail("the entry bundles hold %d entries, the tree %d", entries, t.N)
	}
	if len(os.Args) == 4 {
		old := tree(os.Args[1], os.Args[3])
		proof, err := tlog.ProveTree(t.N, old.N, hr)
		if err != nil {
			fail("tree proof: %v", err)
		}
		if err := tlog.CheckTree(proof, t.N, t.Hash, old.N, old.Hash); err != nil {
			fail("old tree %d: %v", old.N, err)
		}
	}
	fmt.Printf("ok %d %d\n", t.N, entries)
}
