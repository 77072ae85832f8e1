//===- Multipole.cpp - One acausal MuSe problem (ALGORITHM.md §3, §5) -----===//
#include "Multipole.h"

#include "ExactRange.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace muse::ref::detail {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// Rows of every key cluster, ascending (a fixed summation order).
std::vector<std::vector<int64_t>> keyGroups(const MultipoleProblem &p) {
  std::vector<std::vector<int64_t>> groups(p.Ck);
  for (int64_t l = 0; l < p.keyCount; ++l)
    groups[p.keyAssign[l]].push_back(l);
  return groups;
}

/// Stage 1 of one query cluster against every key cluster.
struct Summaries {
  std::vector<double> lnMass; // [Ck] ln sum_{l in j} e^{qbar.k_l}; -inf if empty
  std::vector<double> kbar;   // [Ck][D]
  std::vector<double> vbar;   // [Ck][Dv]
  std::vector<double> sigma;  // [Ck][Dv][D], order >= 1
  std::vector<char> isNear;   // [Ck]
};

void summarize(const MultipoleProblem &p,
               const std::vector<std::vector<int64_t>> &groups,
               const double *qbar, Summaries &s) {
  const int64_t D = p.D, Dv = p.Dv;
  s.lnMass.assign(p.Ck, kNegInf);
  s.kbar.assign(size_t(p.Ck) * D, 0.0);
  s.vbar.assign(size_t(p.Ck) * Dv, 0.0);
  s.sigma.assign(p.order >= 1 ? size_t(p.Ck) * Dv * D : 0, 0.0);
  s.isNear.assign(p.Ck, 0);
  std::vector<double> w;
  for (int j = 0; j < p.Ck; ++j) {
    const auto &rows = groups[j];
    if (rows.empty())
      continue;
    // Per-cluster stabiliser: no cluster underflows to Z = 0.
    w.resize(rows.size());
    double m = kNegInf;
    for (size_t t = 0; t < rows.size(); ++t) {
      w[t] = dot(qbar, p.k + rows[t] * D, D);
      m = std::max(m, w[t]);
    }
    double z = 0;
    for (double &wt : w) {
      wt = std::exp(wt - m);
      z += wt;
    }
    double *kb = s.kbar.data() + j * D;
    double *vb = s.vbar.data() + j * Dv;
    for (size_t t = 0; t < rows.size(); ++t) {
      double pl = w[t] / z;
      const double *kl = p.k + rows[t] * D;
      const double *vl = p.v + rows[t] * Dv;
      for (int64_t d = 0; d < D; ++d)
        kb[d] += pl * kl[d];
      for (int64_t e = 0; e < Dv; ++e)
        vb[e] += pl * vl[e];
    }
    if (p.order >= 1) { // centred second pass: Cov_ij(v, k)
      double *sg = s.sigma.data() + j * Dv * D;
      for (size_t t = 0; t < rows.size(); ++t) {
        double pl = w[t] / z;
        const double *kl = p.k + rows[t] * D;
        const double *vl = p.v + rows[t] * Dv;
        for (int64_t e = 0; e < Dv; ++e) {
          double ve = pl * (vl[e] - vb[e]);
          for (int64_t d = 0; d < D; ++d)
            sg[e * D + d] += ve * (kl[d] - kb[d]);
        }
      }
    }
    s.lnMass[j] = m + std::log(z);
  }
  // Near field: the E non-empty clusters of largest mass, ties to lowest index.
  std::vector<int> order;
  for (int j = 0; j < p.Ck; ++j)
    if (!groups[j].empty())
      order.push_back(j);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return s.lnMass[a] > s.lnMass[b];
  });
  int e = std::min<int>(p.nearClusters, static_cast<int>(order.size()));
  for (int t = 0; t < e; ++t)
    s.isNear[order[t]] = 1;
}

/// u = vbar_j + [order >= 1] sigma_j r.
void expandValue(const MultipoleProblem &p, const Summaries &s, int j,
                 const double *r, double *u) {
  const double *vb = s.vbar.data() + j * p.Dv;
  for (int64_t e = 0; e < p.Dv; ++e) {
    u[e] = vb[e];
    if (p.order >= 1)
      u[e] += dot(s.sigma.data() + (j * p.Dv + e) * p.D, r, p.D);
  }
}

/// Served queries of every query cluster, ascending.
std::vector<std::vector<int64_t>> servedGroups(const MultipoleProblem &p) {
  std::vector<std::vector<int64_t>> groups(p.Cq);
  for (int64_t t = 0; t < p.servedCount; ++t)
    groups[p.servedCluster[t]].push_back(t);
  return groups;
}

} // namespace

void queryCentroids(const MultipoleProblem &p, std::vector<double> &centroids,
                    std::vector<int64_t> &counts) {
  centroids.assign(size_t(p.Cq) * p.D, 0.0);
  counts.assign(p.Cq, 0);
  for (int64_t n = 0; n < p.memberCount; ++n) {
    int i = p.memberAssign[n];
    ++counts[i];
    for (int64_t d = 0; d < p.D; ++d)
      centroids[i * p.D + d] += p.members[n * p.D + d];
  }
  for (int i = 0; i < p.Cq; ++i)
    if (counts[i] > 0)
      for (int64_t d = 0; d < p.D; ++d)
        centroids[i * p.D + d] /= double(counts[i]);
}

void multipoleForward(const MultipoleProblem &p, double *o, double *lse) {
  const int64_t D = p.D, Dv = p.Dv;
  std::vector<double> centroids;
  std::vector<int64_t> counts;
  queryCentroids(p, centroids, counts);
  auto groups = keyGroups(p);
  auto served = servedGroups(p);
  Summaries s;
  std::vector<double> r(D), u(Dv), logits;
  for (int i = 0; i < p.Cq; ++i) {
    if (served[i].empty())
      continue;
    const double *qbar = centroids.data() + i * D;
    summarize(p, groups, qbar, s);
    for (int64_t t : served[i]) {
      const double *xn = p.x + p.served[t] * D;
      for (int64_t d = 0; d < D; ++d)
        r[d] = xn[d] - qbar[d];
      // Logits in a fixed order: clusters ascending, near keys ascending.
      logits.clear();
      for (int j = 0; j < p.Ck; ++j) {
        if (groups[j].empty())
          continue;
        if (s.isNear[j])
          for (int64_t l : groups[j])
            logits.push_back(dot(xn, p.k + l * D, D));
        else
          logits.push_back(s.lnMass[j] + dot(r.data(), s.kbar.data() + j * D, D));
      }
      double m = *std::max_element(logits.begin(), logits.end());
      double *on = o + t * Dv;
      std::fill(on, on + Dv, 0.0);
      double z = 0;
      size_t idx = 0;
      for (int j = 0; j < p.Ck; ++j) {
        if (groups[j].empty())
          continue;
        if (s.isNear[j]) {
          for (int64_t l : groups[j]) {
            double w = std::exp(logits[idx++] - m);
            z += w;
            for (int64_t e = 0; e < Dv; ++e)
              on[e] += w * p.v[l * Dv + e];
          }
        } else {
          double w = std::exp(logits[idx++] - m);
          z += w;
          expandValue(p, s, j, r.data(), u.data());
          for (int64_t e = 0; e < Dv; ++e)
            on[e] += w * u[e];
        }
      }
      for (int64_t e = 0; e < Dv; ++e)
        on[e] /= z;
      lse[t] = m + std::log(z);
    }
  }
}

void multipoleBackward(const MultipoleProblem &p, const double *oFinal,
                       const double *lseFinal, const double *dO,
                       const double *dLse, double *dx, double *dMembers,
                       double *dk, double *dv) {
  const int64_t D = p.D, Dv = p.Dv;
  const bool dipole = p.order >= 1;
  std::vector<double> centroids;
  std::vector<int64_t> counts;
  queryCentroids(p, centroids, counts);
  auto groups = keyGroups(p);
  auto served = servedGroups(p);
  // Member lists per query cluster, for spreading G_i / |i|.
  std::vector<std::vector<int64_t>> members(p.Cq);
  for (int64_t n = 0; n < p.memberCount; ++n)
    members[p.memberAssign[n]].push_back(n);

  Summaries s;
  std::vector<double> r(D), u(Dv), dr(D), dqbar(D), kc(D), vc(Dv), gv(Dv);
  std::vector<double> gLnMass, gKbar, gVbar, gSigma;
  for (int i = 0; i < p.Cq; ++i) {
    if (served[i].empty())
      continue;
    const double *qbar = centroids.data() + i * D;
    summarize(p, groups, qbar, s);
    gLnMass.assign(p.Ck, 0.0);
    gKbar.assign(size_t(p.Ck) * D, 0.0);
    gVbar.assign(size_t(p.Ck) * Dv, 0.0);
    gSigma.assign(dipole ? size_t(p.Ck) * Dv * D : 0, 0.0);
    std::fill(dqbar.begin(), dqbar.end(), 0.0);

    // Stage 2: a softmax over cluster terms and near keys, per served query.
    for (int64_t t : served[i]) {
      const int64_t n = p.served[t];
      const double *xn = p.x + n * D;
      const double *dOn = dO + n * Dv;
      const double delta = dot(dOn, oFinal + n * Dv, Dv);
      const double dl = dLse ? dLse[n] : 0.0;
      for (int64_t d = 0; d < D; ++d)
        r[d] = xn[d] - qbar[d];
      std::fill(dr.begin(), dr.end(), 0.0);
      for (int j = 0; j < p.Ck; ++j) {
        if (groups[j].empty())
          continue;
        if (s.isNear[j]) {
          for (int64_t l : groups[j])
            exactRangeBackward(xn, p.k, p.v, l, l + 1, D, Dv, lseFinal[n], dOn,
                               delta, dl, dx + n * D, dk, dv);
          continue;
        }
        const double *kb = s.kbar.data() + j * D;
        expandValue(p, s, j, r.data(), u.data());
        double P = std::exp(s.lnMass[j] + dot(r.data(), kb, D) - lseFinal[n]);
        double g = P * (dot(dOn, u.data(), Dv) - delta + dl);
        gLnMass[j] += g;
        for (int64_t d = 0; d < D; ++d) {
          gKbar[j * D + d] += g * r[d];
          dr[d] += g * kb[d];
        }
        for (int64_t e = 0; e < Dv; ++e) {
          double du = P * dOn[e];
          gVbar[j * Dv + e] += du;
          if (!dipole)
            continue;
          const double *sg = s.sigma.data() + (j * Dv + e) * D;
          double *gs = gSigma.data() + (j * Dv + e) * D;
          for (int64_t d = 0; d < D; ++d) {
            gs[d] += du * r[d];
            dr[d] += sg[d] * du;
          }
        }
      }
      for (int64_t d = 0; d < D; ++d) {
        dx[n * D + d] += dr[d];
        dqbar[d] -= dr[d];
      }
    }

    // Stage 1: the tilted moments of every multipole cluster, back to k, v
    // and (through the weights) to the centroid.
    for (int j = 0; j < p.Ck; ++j) {
      if (groups[j].empty() || s.isNear[j])
        continue;
      const double *kb = s.kbar.data() + j * D;
      const double *vb = s.vbar.data() + j * Dv;
      const double *G = dipole ? gSigma.data() + j * Dv * D : nullptr;
      const double gSigmaDotSigma =
          dipole ? dot(G, s.sigma.data() + j * Dv * D, Dv * D) : 0.0;
      for (int64_t l : groups[j]) {
        const double *kl = p.k + l * D;
        const double *vl = p.v + l * Dv;
        const double pl = std::exp(dot(qbar, kl, D) - s.lnMass[j]);
        for (int64_t d = 0; d < D; ++d)
          kc[d] = kl[d] - kb[d];
        for (int64_t e = 0; e < Dv; ++e)
          vc[e] = vl[e] - vb[e];
        double ga = gLnMass[j] + dot(gKbar.data() + j * D, kc.data(), D) +
                    dot(gVbar.data() + j * Dv, vc.data(), Dv);
        if (dipole) {
          for (int64_t e = 0; e < Dv; ++e)
            gv[e] = dot(G + e * D, kc.data(), D); // (G kc)_e
          ga += dot(vc.data(), gv.data(), Dv) - gSigmaDotSigma;
        }
        const double da = pl * ga; // d loss / d (qbar . k_l)
        for (int64_t d = 0; d < D; ++d) {
          double gk = pl * gKbar[j * D + d] + da * qbar[d];
          if (dipole)
            for (int64_t e = 0; e < Dv; ++e)
              gk += pl * G[e * D + d] * vc[e];
          dk[l * D + d] += gk;
          dqbar[d] += da * kl[d];
        }
        for (int64_t e = 0; e < Dv; ++e)
          dv[l * Dv + e] += pl * gVbar[j * Dv + e] + (dipole ? pl * gv[e] : 0.0);
      }
    }

    // q̄_i is the mean of its members: each receives G_i / |i|.
    const double inv = 1.0 / double(counts[i]);
    for (int64_t n : members[i])
      for (int64_t d = 0; d < D; ++d)
        dMembers[n * D + d] += dqbar[d] * inv;
  }
}

} // namespace muse::ref::detail
