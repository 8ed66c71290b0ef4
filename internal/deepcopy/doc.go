// Package deepcopy makes deep copies of arbitrary values, so that parallel
// branches and loop iterations each get run state of their own and a cache
// hit hands out a result no other caller can mutate.
//
// It is the deliberately plain baseline: every call copies everything it can
// reach (except immutable values, which are shared). The JSON shapes that
// encoding/json decodes into are copied without reflection; everything else
// goes through package reflect. See [Copy] for the exact rules.
package deepcopy
