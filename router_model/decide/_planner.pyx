# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Serving decisions' plans in C: the arithmetic of `StartChoice.plan_columns`, task by task.

For each encoded row: scores it on every ladder tier through lleaves' compiled trees,
calibrates, prices each attempt, runs the ladder's dynamic programme for cost and bad
outcome, and picks the start tier. Every step is the Python path's own formula in the same
order (`tests/router_model/decide/test_planner.py` holds them together), so the answers are
the same numbers; in Python the same work is a hundred interpreter steps, most of a decision's time.

Each call works in buffers of its own and nothing in the object changes after it is built,
so threads may share one planner. Argument lengths are checked up front: indexing is
unchecked for speed (boundscheck=False) past that point.
"""

from libc.math cimport exp, log, sqrt, INFINITY
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc

ctypedef void (*forest_fn)(double*, double*, int, int) noexcept nogil


cdef double[::1] _doubles(values):
    cdef double[::1] out = memoryview(bytearray(8 * max(len(values), 1))).cast("d")
    cdef Py_ssize_t i
    for i in range(len(values)):
        out[i] = values[i]
    return out


cdef void _require(bint ok, str what) except *:
    if not ok:
        raise ValueError(f"CompiledPlanner {what}")


cdef class CompiledPlanner:
    cdef forest_fn forest
    cdef int width, tiers, tier_col, retries, isotonic, threshold_rule, fp_model
    cdef double[::1] codes, xs, ys, price_in, price_out, first_s, per_s, window
    cdef double[::1] fs, fv, fm, retry_pass, intercept
    cdef double a, b, slope, gate_in, gate_out, gate_overhead, gate_tokens, embed_price
    cdef double gate_s, latency_price
    cdef object owner  # keeps the compiled trees (and so `forest`) alive

    def __init__(self, owner, uintptr_t forest_address, int width, int tier_col, codes,
                 calibrator, tiers, gate, ladder, false_pass_model, int retries,
                 bint threshold_rule):
        """`calibrator`: ("isotonic", xs, ys) or ("sigmoid", a, b). `tiers`: per ladder
        tier (price in, price out, first-token s, tokens/s, context window). `gate`: the
        validator's (price in, price out), prompt overhead and output tokens, embedding
        price, gate seconds, latency price. `ladder`: per tier (schema share, severe
        share, near-miss share, retry pass rate). `false_pass_model`: (slope,
        intercepts) or None (rates given per call)."""
        self.owner = owner
        self.forest = <forest_fn>forest_address
        self.width, self.tier_col, self.retries = width, tier_col, retries
        self.tiers = len(codes)
        self.threshold_rule = threshold_rule
        self.codes = _doubles(codes)
        kind, first, second = calibrator
        self.isotonic = kind == "isotonic"
        self.xs = _doubles(first if self.isotonic else [])
        self.ys = _doubles(second if self.isotonic else [])
        self.a = 0.0 if self.isotonic else first
        self.b = 0.0 if self.isotonic else second
        columns = list(zip(*tiers))
        self.price_in, self.price_out, self.first_s, self.per_s, self.window = [
            _doubles(c) for c in columns]
        (self.gate_in, self.gate_out), self.gate_overhead, self.gate_tokens, \
            self.embed_price, self.gate_s, self.latency_price = gate
        self.fs, self.fv, self.fm, self.retry_pass = [_doubles(c) for c in zip(*ladder)]
        self.fp_model = false_pass_model is not None
        self.slope = false_pass_model[0] if self.fp_model else 0.0
        self.intercept = _doubles(false_pass_model[1] if self.fp_model else [])
        _require(self.tiers >= 1 and width >= 1 and 0 <= tier_col < width and retries >= 0,
                 "needs tiers, features, a tier column among them and retries >= 0")
        _require(len(tiers) == len(ladder) == self.tiers and len(columns) == 5,
                 "needs one (5 prices and speeds) and one (4 shares) per tier")
        _require(not self.isotonic or len(first) == len(second) >= 1,
                 "needs as many isotonic thresholds as values, at least one")
        _require(not self.fp_model or len(false_pass_model[1]) == self.tiers,
                 "needs one false-pass intercept per tier")

    def plan(self, const double[:, ::1] X, double prompt_total, double output,
             rates, penalty, double price, double required):
        """(start, pass probabilities, expected costs, fits the context) for one encoded
        row. `rates`: the false-pass rate per tier when there is no false-pass model.
        `penalty`: the planning pessimism's kappa^2 / (n + 1) per tier, or None.
        `price`: lam x w(field); `required`: the threshold rule's pass probability. The
        probabilities returned are the model's; the plan acts on the pessimistic ones."""
        self._check_width(X, 1)
        cdef int L = self.tiers, t, start
        cdef double *buffer = self._buffer()
        cdef double *p = buffer + 5 * L
        cdef double *cost_first = buffer + 3 * L
        try:
            self._fill_rates(rates, buffer + 2 * L)
            self._fill_penalty(penalty, buffer + 6 * L)
            start = self._plan_row(&X[0, 0], prompt_total, output, price, required, buffer)
            tokens = prompt_total + output
            return (start, [p[t] for t in range(L)], [cost_first[t] for t in range(L)],
                    [tokens <= self.window[t] for t in range(L)])
        finally:
            free(buffer)

    def plan_many(self, const double[:, ::1] X, prompt_total, output, rates, penalty,
                  price, required):
        """`plan` for each row of X (per-task lists of the same arguments; `rates` None
        with a false-pass model, `penalty` None without pessimism): (starts, probability
        rows, expected-cost columns, fits-the-context columns), the layout of
        `StartChoice.plan_columns`."""
        cdef Py_ssize_t n = X.shape[0], i
        self._check_width(X, n)
        _require(len(prompt_total) == len(output) == len(price) == len(required) == n and (
            self.fp_model or rates is not None and len(rates) == n) and (
            penalty is None or len(penalty) == n),
            f"plan_many needs one value per task ({n}) in every list")
        cdef int L = self.tiers, t
        cdef double *buffer = self._buffer()
        cdef double *p = buffer + 5 * L
        cdef double *cost_first = buffer + 3 * L
        starts, p_rows = [], []
        cost_columns = [[] for _ in range(L)]
        fit_columns = [[] for _ in range(L)]
        try:
            for i in range(n):
                self._fill_rates(None if self.fp_model else rates[i], buffer + 2 * L)
                self._fill_penalty(None if penalty is None else penalty[i], buffer + 6 * L)
                starts.append(self._plan_row(&X[i, 0], prompt_total[i], output[i], price[i],
                                             required[i], buffer))
                p_rows.append([p[t] for t in range(L)])
                tokens = prompt_total[i] + output[i]
                for t in range(L):
                    cost_columns[t].append(cost_first[t])
                    fit_columns[t].append(tokens <= self.window[t])
        finally:
            free(buffer)
        return starts, p_rows, cost_columns, fit_columns

    cdef void _check_width(self, const double[:, ::1] X, Py_ssize_t rows) except *:
        if X.shape[0] != rows or X.shape[1] != self.width:
            raise ValueError(f"{rows} row(s) of {self.width} features, not "
                             f"{X.shape[0]} x {X.shape[1]}")

    cdef double *_buffer(self) except NULL:
        """One call's scratch: the planning p, cost, false pass, cost and bad from each
        start, the model's p, the pessimism (one entry per tier each), then the tier rows
        for the trees."""
        cdef double *buffer = <double *>malloc(sizeof(double) * self.tiers * (7 + self.width))
        if buffer == NULL:
            raise MemoryError()
        return buffer

    cdef void _fill_rates(self, rates, double *fp) except *:
        """The false-pass rates given per task (no false-pass model) into `fp`."""
        cdef int t
        if self.fp_model:
            return
        _require(rates is not None and len(rates) == self.tiers,
                 f"needs one false-pass rate per tier ({self.tiers}) without a model")
        for t in range(self.tiers):
            fp[t] = rates[t]

    cdef void _fill_penalty(self, penalty, double *pen) except *:
        """The pessimism per tier into `pen` (zeros when planning is not pessimistic)."""
        cdef int t
        _require(penalty is None or len(penalty) == self.tiers,
                 f"needs one pessimism term per tier ({self.tiers})")
        for t in range(self.tiers):
            pen[t] = 0.0 if penalty is None else penalty[t]

    cdef int _plan_row(self, const double *row, double prompt_total, double output,
                       double price, double required, double *buffer) except -1:
        """One task into `buffer` (see `_buffer`; the rates and the pessimism already in
        place); returns its start tier."""
        cdef int L = self.tiers, t, j
        cdef double *p = buffer
        cdef double *cost = buffer + L
        cdef double *fp = buffer + 2 * L
        cdef double *cost_first = buffer + 3 * L
        cdef double *bad_first = buffer + 4 * L
        cdef double *model_p = buffer + 5 * L
        cdef double *pen = buffer + 6 * L
        cdef double *rows = buffer + 7 * L
        for t in range(L):
            for j in range(self.width):
                rows[t * self.width + j] = row[j]
            rows[t * self.width + self.tier_col] = self.codes[t]
            model_p[t] = 0.0
        self.forest(rows, model_p, 0, L)
        for t in range(L):
            model_p[t] = self._calibrated(model_p[t])
            p[t] = model_p[t]
            if pen[t] != 0.0:  # StartChoice.planning_p, the same steps
                p[t] = p[t] - sqrt(p[t] * (1.0 - p[t]) * pen[t])
                if p[t] < 0.0:
                    p[t] = 0.0
            if self.fp_model:
                fp[t] = self._false_pass(t, p[t])
        self._attempt_costs(prompt_total, output, cost)
        self._programme(p, cost, 0.0, 0.0, cost_first)
        self._programme(p, fp, 1.0, 1.0, bad_first)
        return self._choose(p, cost_first, bad_first, prompt_total + output, price, required)

    cdef double _calibrated(self, double raw):
        """`np.interp` over the isotonic thresholds (numpy's own steps), or Platt's sigmoid."""
        if not self.isotonic:
            return 1.0 / (1.0 + exp(self.a * raw + self.b))
        cdef int n = self.xs.shape[0], lo = 0, hi = n, mid, j
        cdef double slope, value
        if raw != raw:
            return raw
        while lo < hi:  # the last threshold <= raw, as numpy's binary search finds it
            mid = lo + ((hi - lo) >> 1)
            if raw >= self.xs[mid]:
                lo = mid + 1
            else:
                hi = mid
        j = lo - 1
        if j == -1:
            return self.ys[0]
        if j >= n - 1 or self.xs[j] == raw:
            return self.ys[j]
        slope = (self.ys[j + 1] - self.ys[j]) / (self.xs[j + 1] - self.xs[j])
        value = slope * (raw - self.xs[j]) + self.ys[j]
        if value != value:
            value = slope * (raw - self.xs[j + 1]) + self.ys[j + 1]
            if value != value and self.ys[j] == self.ys[j + 1]:
                value = self.ys[j]
        return value

    cdef double _false_pass(self, int t, double p):
        """sigmoid(c_t + slope x logit(p)), p held inside [1e-6, 1 - 1e-6] first."""
        if 1e-6 > p:
            p = 1e-6
        if 1 - 1e-6 < p:
            p = 1 - 1e-6
        cdef double z = self.intercept[t] + self.slope * log(p / (1.0 - p))
        return 1.0 / (1.0 + exp(-z))

    cdef void _attempt_costs(self, double prompt_total, double output, double *cost):
        """USD of one attempt per tier: the call, the gate, and the price of its seconds."""
        cdef double gate_prompt = output + self.gate_overhead
        cdef double gate = (gate_prompt * self.gate_in + self.gate_tokens * self.gate_out) \
            / 1e6 + output * self.embed_price / 1e6
        cdef double seconds, call
        for t in range(self.tiers):
            seconds = (self.first_s[t] + output / self.per_s[t]) + self.gate_s
            call = (prompt_total * self.price_in[t] + output * self.price_out[t]) / 1e6
            cost[t] = call + gate + self.latency_price * seconds

    cdef void _programme(self, double *p_first, double *now, double flag, double on_pass,
                         double *first):
        """`LadderCostModel._programme`: the value of a first attempt at each tier."""
        cdef int top = self.tiers - 1, t, k
        cdef double escalate, jumps, retry_gain, value, p, gain, after
        for t in range(top, -1, -1):
            escalate = flag if t == top else first[t + 1]
            jumps = 0.0 if t == top else self.fs[t] * escalate + self.fv[t] * first[top]
            retry_gain = (self.retry_pass[t] * on_pass + (1.0 - on_pass)) * now[t]
            value = escalate
            for k in range(self.retries, -1, -1):
                p = p_first[t] if k == 0 else self.retry_pass[t]
                gain = (p * on_pass + (1.0 - on_pass)) * now[t] if k == 0 else retry_gain
                after = value if t == top else jumps + self.fm[t] * value
                value = gain + (1.0 - p) * after
            first[t] = value

    cdef int _choose(self, double *p, double *cost, double *bad, double tokens,
                     double price, double required):
        """The tier with the least loss among those that qualify (premium when none)."""
        cdef int top = self.tiers - 1, start = top, t
        cdef double best = INFINITY, loss
        cdef bint fits, ok
        for t in range(self.tiers):
            fits = tokens <= self.window[t]
            if self.threshold_rule:
                ok = fits if t == top else fits and p[t] >= required
                loss = cost[t]
            else:
                ok, loss = fits, cost[t] + price * bad[t]
            if ok and loss < best:
                best, start = loss, t
        return start
