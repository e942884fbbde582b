package bench

import (
	"slices"
	"testing"
)

// Over a full design every path runs first once and runs right after every
// other path equally often, so no path always follows the same one.
func TestOrderIsBalanced(t *testing.T) {
	for n := 1; n <= 6; n++ {
		rounds := n
		if n%2 == 1 {
			rounds = 2 * n
		}
		after := map[[2]int]int{}
		for round := range rounds {
			row := order(n, round)
			sorted := slices.Sorted(slices.Values(row))
			for i, v := range sorted {
				if v != i {
					t.Fatalf("n=%d round %d: %v is not an order of the %d paths", n, round, row, n)
				}
			}
			for j := 1; j < n; j++ {
				after[[2]int{row[j-1], row[j]}]++
			}
		}
		for a := range n {
			for b := range n {
				if a != b && after[[2]int{a, b}] != rounds/n {
					t.Errorf("n=%d: path %d ran right after path %d %d times in %d rounds, want %d", n, b, a, after[[2]int{a, b}], rounds, rounds/n)
				}
			}
		}
	}
}
