// note_verify checks a signed note with golang.org/x/mod/sumdb/note, the Go module
// checksum database's own implementation, as an independent verifier of the ledger's
// checkpoints.
//
//	note_verify VERIFIER_KEY NOTE_FILE
//
// Prints the note's text and exits 0 when a signature by the key verifies; otherwise
// prints the library's error and exits 1.
package main

import (
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: note_verify VERIFIER_KEY NOTE_FILE")
		os.Exit(2)
	}
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "verifier key:", err)
		os.Exit(1)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fmt.Fprintln(os.Stderr, "note:", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
}
