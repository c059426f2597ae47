#include "sim/simulator.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <queue>
#include <vector>

#include "core/strings.h"
#include "core/time.h"
#include "sim/random.h"

namespace vigil::sim {
namespace {

using core::kMsPerDay;
using core::kMsPerHour;
using core::kMsPerMinute;
using core::kMsPerSecond;

// ---------------------------------------------------------------------------
// The world: countries, addresses, assets.

struct Country {
  const char* code;
  int tz;             // hours from UTC of its daily rhythm
  int ip_a, ip_b;     // the first two octets of its home blocks
  const char* bin;    // card BIN prefix (4 digits) of its issuers
  double weight;      // share of genuine users
};

constexpr Country kCountries[] = {
    {"US", -5, 73, 24, "4147", 0.22}, {"GB", 0, 81, 86, "4659", 0.12},
    {"DE", 1, 91, 64, "4921", 0.10},  {"FR", 1, 90, 12, "4970", 0.08},
    {"TR", 3, 88, 240, "4022", 0.08}, {"NG", 1, 105, 112, "5399", 0.06},
    {"IN", 5, 117, 96, "4375", 0.10}, {"JP", 9, 126, 72, "3528", 0.07},
    {"SG", 8, 119, 56, "4563", 0.05}, {"AU", 10, 101, 160, "4564", 0.05},
    {"CA", -5, 142, 112, "4506", 0.07}, {"BR", -3, 177, 32, "5067", 0.0},  // opens at the drift
};
constexpr int kNumCountries = sizeof(kCountries) / sizeof(kCountries[0]);

struct Asset {
  const char* code;
  double usd;
  int decimals;
};
constexpr Asset kAssets[] = {{"USD", 1, 2}, {"EUR", 1.08, 2}, {"USDT", 1, 2}, {"BTC", 60000, 8},
                             {"ETH", 3000, 8}};
constexpr const char* kAgeBands[] = {"18-24", "25-34", "35-44", "45-54", "55+"};
constexpr double kGenuineAge[] = {0.15, 0.30, 0.25, 0.18, 0.12};
constexpr const char* kDisposable[] = {"mailinator.com", "yopmail.com", "10minutemail.com",
                                       "guerrillamail.com", "tempmail.com", "trashmail.com"};
constexpr const char* kMailDomains[] = {"gmail.com", "outlook.com", "yahoo.com", "icloud.com",
                                        "proton.me", "gmx.de", "mail.ru"};
constexpr const char* kFirst[] = {"alex", "sam", "maria", "li", "omar", "yuki", "ana", "john",
                                  "fatima", "lucas", "emma", "ivan", "noah", "sofia", "ravi"};
constexpr const char* kLast[] = {"smith", "garcia", "chen", "okafor", "tanaka", "muller",
                                 "silva", "kaya", "patel", "martin", "brown", "nguyen"};
constexpr const char* kBrowserAgents[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) Safari/605.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14) Chrome/120.0 Mobile",
    "ExchangeApp/5.12 (iOS 17.2)", "ExchangeApp/5.12 (Android 14)"};
constexpr const char* kBotAgent = "python-requests/2.31.0";

enum Scenario : uint8_t { kGenuine, kBot, kPromo, kCard, kTakeover, kFake };
constexpr const char* kScenarioName[] = {"", "bot", "promo_abuse", "card_fraud",
                                         "account_takeover", "fake_signup"};
constexpr const char* kLabelKind[] = {"", "bot", "promo_abuse", "chargeback", "account_takeover",
                                      "fake_signup"};

std::string Ip(int a, int b, int c, int d) { return StrCat(a, ".", b, ".", c, ".", d); }
std::string Hex(uint64_t v, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = kHex[v & 15];
  return s;
}
std::string Wallet(Random& r, bool eth) {
  if (eth) return "0x" + Hex(r.Next(), 16) + Hex(r.Next(), 16) + Hex(r.Next() & 0xffffffff, 8);
  static constexpr char kB32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
  std::string s = "bc1q";
  for (int i = 0; i < 38; ++i) s += kB32[r.Below(32)];
  return s;
}
// `v` rounded to `decimals` places, as text (no printf: it is per event).
std::string Fixed(double v, int decimals) {
  static constexpr int64_t kPow[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
  const int64_t scaled = std::llround(v * static_cast<double>(kPow[decimals]));
  std::string s = std::to_string(scaled / kPow[decimals]);
  std::string frac = std::to_string(scaled % kPow[decimals]);
  s += '.';
  s.append(static_cast<size_t>(decimals) - frac.size(), '0');
  s += frac;
  return s;
}
std::string Amount(double usd, const Asset& a) { return Fixed(usd / a.usd, a.decimals); }
std::string Usd(double usd) { return Fixed(usd, 2); }

// ---------------------------------------------------------------------------
// Actors.

struct Card {
  std::string id, bin;
  int country;
};

struct User {
  uint32_t id = 0;
  int country = 0;
  uint8_t age = 0;
  bool pro = false;
  Scenario scenario = kGenuine;
  int64_t signup_ms = -1;  // -1: signed up before the start
  double rate = 0;         // sessions a day
  std::string email;
  std::vector<std::string> devices;
  std::string home_ip;
  std::string office_ip;   // empty unless behind an office NAT
  std::vector<Card> cards;
  std::string wallet;      // their own withdrawal address
  int kyc = 0;
  bool redeemed = false;
  bool vpn = false;            // often connects through a VPN
  int64_t api_interval = 0;    // > 0: trades through the API every this many ms
};

// One event being built: its time, a tie-breaking sequence number, its type
// and the JSON fields after `time`.
struct Ev {
  int64_t t;
  uint64_t seq;
  const char* type;
  std::string body;
  // A label to schedule once the event has its id.
  int label_kind = 0;  // Scenario index; 0 none
  int64_t label_delay = 0;
  bool label_entity = false;  // name the user instead of the event
  uint32_t user = 0;
  Scenario scenario = kGenuine;
};

struct PendingLabel {
  int64_t t;
  uint64_t seq;
  std::string body;
  bool operator>(const PendingLabel& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

class Body {
 public:
  Body() { s_.reserve(256); }
  Body& S(std::string_view k, std::string_view v) {
    StrAppend(&s_, ",\"", k, "\":\"", v, "\"");
    return *this;
  }
  Body& N(std::string_view k, std::string_view v) {  // a number or literal
    StrAppend(&s_, ",\"", k, "\":", v);
    return *this;
  }
  std::string Take() { return std::move(s_); }

 private:
  std::string s_;
};

class World {
 public:
  World(const SimConfig& c, const std::function<void(std::string_view)>& sink, SimStats* stats)
      : c_(c), sink_(sink), stats_(stats), rng_(c.seed) {
    drift_day_ = c_.drift_day >= 0 ? c_.drift_day : c_.days * 2 / 3;
    end_ms_ = c_.start_ms + c_.days * kMsPerDay;
    new_country_ = -1;
    for (int i = 0; i < kNumCountries; ++i) {
      if (c_.new_country == kCountries[i].code) new_country_ = i;
    }
    MakeGenuineUsers();
    PlanAttacks();
  }

  void Run(const std::function<void(int64_t, int64_t)>& progress) {
    for (int64_t day = 0; day < c_.days; ++day) {
      day_ = day;
      day_start_ = c_.start_ms + day * kMsPerDay;
      Random r = Random::Derive(c_.seed, static_cast<uint64_t>(day) + 1);
      for (User& u : users_) {
        if (u.scenario == kGenuine) GenuineDay(u, r);
      }
      AttacksOfTheDay(r);
      Flush();
      if (progress) progress(day + 1, stats_->events);
    }
    stats_->events_after_end += static_cast<int64_t>(evs_.size());
    while (!labels_.empty()) {  // arrive after the last day: not written
      labels_.pop();
      ++stats_->labels_after_end;
    }
  }

 private:
  // --- users -------------------------------------------------------------
  int PickCountry(Random& r, bool after_drift) {
    std::vector<double> w;
    for (int i = 0; i < kNumCountries; ++i) w.push_back(kCountries[i].weight);
    if (after_drift && new_country_ >= 0) w[static_cast<size_t>(new_country_)] = 0.15;
    return static_cast<int>(r.Pick(w));
  }
  std::string HomeIp(Random& r, int country) {
    const Country& c = kCountries[country];
    return Ip(c.ip_a, c.ip_b + static_cast<int>(r.Below(8)), static_cast<int>(r.Below(200)),
              1 + static_cast<int>(r.Below(254)));
  }
  // A carrier's shared mobile address (CGNAT): few per country, many users.
  std::string MobileIp(Random& r, int country) {
    const Country& c = kCountries[country];
    return Ip(c.ip_a + 1, c.ip_b, 200, 1 + static_cast<int>(r.Below(40)));
  }
  std::string DatacenterIp(Random& r, int block) {
    return Ip(34 + block % 4, 80 + block % 90, static_cast<int>(r.Below(256)),
              1 + static_cast<int>(r.Below(254)));
  }
  std::string VpnIp(Random& r) { return Ip(185, 220, 100 + static_cast<int>(r.Below(4)), 1 + static_cast<int>(r.Below(254))); }
  std::string Device(Random& r) { return "d" + Hex(r.Next() & 0xffffffff, 8); }
  Card NewCard(Random& r, int country) {
    const Country& c = kCountries[country];
    return Card{"c" + Hex(r.Next() & 0xffffffff, 8), StrCat(c.bin, 10 + r.Below(90)), country};
  }
  std::string Email(Random& r, bool disposable, int64_t n) {
    const std::string name = StrCat(kFirst[r.Below(std::size(kFirst))], ".",
                                    kLast[r.Below(std::size(kLast))], n);
    return StrCat(name, "@",
                  disposable ? kDisposable[r.Below(std::size(kDisposable))]
                             : kMailDomains[r.Below(std::size(kMailDomains))]);
  }
  uint8_t Age(Random& r, bool attacker) {
    if (attacker) return r.Chance(c_.attacker_young_share) ? static_cast<uint8_t>(r.Below(2)) : static_cast<uint8_t>(2 + r.Below(3));
    return static_cast<uint8_t>(r.Pick(std::vector<double>(std::begin(kGenuineAge), std::end(kGenuineAge))));
  }

  User& NewUser(Random& r, Scenario s, int country) {
    User u;
    u.id = static_cast<uint32_t>(users_.size() + 1);
    u.scenario = s;
    u.country = country;
    u.age = Age(r, s != kGenuine);
    u.pro = r.Chance(s == kGenuine ? c_.pro_share : c_.pro_share / 4);
    u.devices.push_back(Device(r));
    u.home_ip = HomeIp(r, country);
    u.wallet = Wallet(r, r.Chance(0.4));
    u.email = Email(r, false, u.id);
    users_.push_back(std::move(u));
    return users_.back();
  }

  void MakeGenuineUsers() {
    Random r = Random::Derive(c_.seed, 0x05e5);
    std::vector<std::string> offices;
    for (int i = 0; i < std::max<int64_t>(1, c_.users / 200); ++i) offices.push_back(HomeIp(r, PickCountry(r, false)));
    for (int64_t i = 0; i < c_.users; ++i) {
      const bool existing = r.Chance(c_.existing_share);
      const int64_t signup =
          existing ? -1 : c_.start_ms + static_cast<int64_t>(r.Uniform() * static_cast<double>(c_.days * kMsPerDay));
      const bool late = signup >= c_.start_ms + drift_day_ * kMsPerDay;
      User& u = NewUser(r, kGenuine, PickCountry(r, late));
      u.signup_ms = signup;
      u.kyc = existing ? 1 + static_cast<int>(r.Below(2)) : 0;
      u.rate = r.LogNormal(c_.sessions_median, c_.sessions_sigma);
      if (r.Chance(0.5)) u.devices.push_back(Device(r));
      if (r.Chance(0.7)) u.cards.push_back(NewCard(r, u.country));
      if (r.Chance(c_.office_share)) u.office_ip = offices[r.Below(offices.size())];
      u.vpn = r.Chance(c_.vpn_user_share);
      if (u.pro && r.Chance(c_.api_trader_share)) u.api_interval = r.Between(60, 900) * kMsPerSecond;
      // Families: share the previous user's device and home address.
      if (r.Chance(c_.family_share) && users_.size() > 1) {
        User& prev = users_[users_.size() - 2];
        if (prev.scenario == kGenuine && prev.country == u.country) {
          u.devices[0] = prev.devices[0];
          u.home_ip = prev.home_ip;
        }
      }
    }
    genuine_ = users_.size();
  }

  // --- events ------------------------------------------------------------
  Ev& Emit(int64_t t, const char* type, const User& u, Body b) {
    Ev e;
    e.t = t;
    e.seq = seq_++;
    e.type = type;
    e.user = u.id;
    e.scenario = u.scenario;
    std::string body;
    const std::string fields = b.Take();
    body.reserve(fields.size() + 64);
    StrAppend(&body, ",\"user_id\":\"u", Pad7(u.id), "\"");
    body += fields;
    if (u.scenario != kGenuine) StrAppend(&body, ",\"scenario\":\"", kScenarioName[u.scenario], "\"");
    e.body = std::move(body);
    evs_.push_back(std::move(e));
    return evs_.back();
  }
  static std::string Pad7(uint32_t id) {
    char buf[16];
    snprintf(buf, sizeof buf, "%07u", id);
    return buf;
  }
  const char* IpType(const std::string& ip) {
    if (StartsWith(ip, "185.220.")) return "vpn";
    if (ip.size() > 3 && (StartsWith(ip, "34.") || StartsWith(ip, "35.") || StartsWith(ip, "36.") ||
                          StartsWith(ip, "37."))) {
      return "datacenter";
    }
    return ".200." == ip.substr(ip.find('.', ip.find('.') + 1), 5) ? "mobile" : "residential";
  }
  Body Net(const std::string& device, const std::string& ip, int ip_country) {
    Body b;
    if (!device.empty()) b.S("device_id", device);
    b.S("ip", ip).S("ip_country", kCountries[ip_country].code).S("ip_type", IpType(ip));
    return b;
  }
  // A time in the user's day, following the country's daily rhythm.
  int64_t TimeOfDay(Random& r, int country) {
    const double local = r.Chance(0.6) ? r.Normal(20.5, 2.5) : r.Normal(12.5, 3);
    double h = std::fmod(local - kCountries[country].tz + 48.0, 24.0);
    return day_start_ + static_cast<int64_t>(h * kMsPerHour);
  }

  void Signup(Random& r, User& u, int64_t t, const std::string& device, const std::string& ip,
              int ip_country, const char* agent, const User* referrer) {
    Body b = Net(device, ip, ip_country);
    b.S("email", u.email).S("country", kCountries[u.country].code).S("age_band", kAgeBands[u.age])
        .S("segment", u.pro ? "pro" : "retail").S("user_agent", agent);
    if (referrer) {
      b.S("referrer_id", StrCat("u", Pad7(referrer->id)));
    } else {
      b.N("referrer_id", "null");
    }
    Ev& e = Emit(t, "signup", u, std::move(b));
    if (u.scenario == kBot || u.scenario == kPromo || u.scenario == kFake) {
      if (r.Chance(c_.abuse_found_rate)) {
        e.label_kind = u.scenario;
        e.label_entity = true;
        const double u = r.Uniform();  // 1 to 21 days, most within ten
        e.label_delay = static_cast<int64_t>((1 + 20 * u * u) * kMsPerDay);
      }
    }
  }

  void GenuineDay(User& u, Random& r) {
    const int64_t day_end = day_start_ + kMsPerDay;
    if (u.signup_ms >= day_end) return;
    bool active = false;
    int64_t floor = day_start_;
    if (u.signup_ms >= day_start_) {
      Signup(r, u, u.signup_ms, u.devices[0], u.home_ip, u.country,
             kBrowserAgents[r.Below(std::size(kBrowserAgents))], nullptr);
      floor = u.signup_ms + kMsPerMinute;
      if (r.Chance(0.6)) {
        Emit(floor + static_cast<int64_t>(r.Exponential(20 * kMsPerMinute)), "kyc_submit", u,
             Net(u.devices[0], u.home_ip, u.country).N("level", "1").S("document_country", kCountries[u.country].code));
        u.kyc = 1;
      }
      active = true;
    }
    const int wd = static_cast<int>((day_start_ / kMsPerDay + 3) % 7);  // 0 = Monday
    const double factor = wd >= 5 ? c_.weekend_factor : 1.0;
    const int64_t sessions = r.Poisson(u.rate * factor);
    for (int64_t s = 0; s < sessions; ++s) {
      int64_t t = std::max(TimeOfDay(r, u.country), floor);
      if (t >= day_end) continue;
      active = true;
      // Where from: home, office, a carrier's shared address, a VPN, abroad.
      session_country_ = u.country;
      std::string ip;
      if (r.Chance(c_.travel_share)) {
        session_country_ = (u.country + 1 + static_cast<int>(r.Below(kNumCountries - 2))) % (kNumCountries - 1);
        ip = r.Chance(0.5) ? MobileIp(r, session_country_) : HomeIp(r, session_country_);
        if (r.Chance(0.2)) u.devices.push_back(Device(r));  // a new phone on the trip
      } else if (u.vpn && r.Chance(0.5)) {
        ip = VpnIp(r);
        session_country_ = static_cast<int>(r.Below(kNumCountries - 1));
      } else if (r.Chance(c_.mobile_share)) {
        ip = MobileIp(r, u.country);
      } else {
        ip = !u.office_ip.empty() && r.Chance(0.5) ? u.office_ip : u.home_ip;
      }
      const std::string& device = u.devices[r.Below(u.devices.size())];
      const char* agent = kBrowserAgents[r.Below(std::size(kBrowserAgents))];
      if (r.Chance(0.04)) {
        Emit(t, "login", u, Net(device, ip, session_country_).N("success", "false").S("user_agent", agent));
        t += static_cast<int64_t>(r.Exponential(30 * kMsPerSecond)) + 1;
      }
      Emit(t, "login", u, Net(device, ip, session_country_).N("success", "true").S("user_agent", agent));
      const int64_t actions = 1 + r.Poisson(1.2);
      for (int64_t a = 0; a < actions; ++a) {
        t += static_cast<int64_t>(r.Exponential(3 * kMsPerMinute)) + kMsPerSecond;
        if (t >= day_end) break;
        GenuineAction(r, u, t, device, ip);
      }
    }
    // A genuine API trader: a schedule like a bot's, on a real account.
    if (u.api_interval > 0 && u.signup_ms < day_start_ && r.Chance(0.7)) {
      int64_t t = day_start_ + (u.id % 20) * kMsPerHour;
      const int64_t stop = t + r.Between(1, 4) * kMsPerHour;
      const char* pairs[] = {"BTC-USDT", "ETH-USDT", "BTC-USD"};
      for (; t < std::min(stop, day_end); t += u.api_interval + r.Between(-2000, 2000)) {
        Emit(t, "trade", u, Net("", u.home_ip, u.country).S("pair", pairs[u.id % 3])
                                .S("side", r.Chance(0.5) ? "buy" : "sell")
                                .S("amount_usd", Usd(r.LogNormal(400, 0.8))).S("via", "api"));
        active = true;
      }
    }
    if (active) ++stats_->active_user_days;
  }

  void GenuineAction(Random& r, User& u, int64_t t, const std::string& device, const std::string& ip) {
    const size_t what = r.Pick({60, 15, 10, 2, 1, 1, 0.5, 1, 0.5});
    switch (what) {
      case 0: {  // trade
        const char* pairs[] = {"BTC-USD", "ETH-USD", "BTC-USDT", "ETH-USDT"};
        Emit(t, "trade", u, Net(device, ip, session_country_).S("pair", pairs[r.Below(4)])
                                .S("side", r.Chance(0.5) ? "buy" : "sell")
                                .S("amount_usd", Usd(r.LogNormal(u.pro ? 900 : 120, 1.2)))
                                .S("via", "web"));
        break;
      }
      case 1: {  // deposit
        const double usd = r.Chance(c_.small_card_share) && !u.cards.empty() ? r.Uniform(1, 5)
                                                                            : r.LogNormal(u.pro ? 2500 : 250, 1.0);
        const size_t method = u.cards.empty() ? 1 + r.Below(2) : r.Pick({0.45, 0.35, 0.2});
        Body b = Net(device, ip, session_country_);
        if (method == 0) {
          const Card& c = u.cards[0];
          b.S("method", "card").S("amount", Amount(usd, kAssets[0])).S("asset", "USD")
              .S("amount_usd", Usd(usd)).S("card_id", c.id).S("card_bin", c.bin)
              .S("card_country", kCountries[c.country].code);
        } else if (method == 1) {
          const Asset& a = kAssets[r.Below(2)];
          b.S("method", "bank").S("amount", Amount(usd, a)).S("asset", a.code).S("amount_usd", Usd(usd));
        } else {
          const Asset& a = kAssets[2 + r.Below(3)];
          b.S("method", "crypto").S("amount", Amount(usd, a)).S("asset", a.code)
              .S("amount_usd", Usd(usd)).S("wallet", Wallet(r, a.code[0] == 'E'));
        }
        Emit(t, "deposit", u, std::move(b));
        break;
      }
      case 2: {  // withdrawal to their own address
        const Asset& a = kAssets[2 + r.Below(3)];
        const double usd = r.LogNormal(u.pro ? 2000 : 200, 1.0);
        Emit(t, "withdrawal", u, Net(device, ip, session_country_).S("asset", a.code).S("amount", Amount(usd, a))
                                     .S("amount_usd", Usd(usd)).S("wallet", u.wallet));
        break;
      }
      case 3:
        if (!u.redeemed) {
          u.redeemed = true;
          Emit(t, "promo_redeem", u, Net(device, ip, session_country_).S("promo", "deposit_match").S("amount_usd", "25.00"));
        }
        break;
      case 4:
        Emit(t, "password_reset", u, Net(device, ip, session_country_));
        break;
      case 5:
        Emit(t, "2fa_change", u, Net(device, ip, session_country_).S("method", r.Chance(0.7) ? "totp" : "sms"));
        break;
      case 6:
        Emit(t, "api_key_create", u, Net(device, ip, session_country_).S("permissions", "read"));
        break;
      case 7: {
        const User& other = users_[r.Below(genuine_)];
        if (other.id != u.id) {
          Emit(t, "referral", u, Body().S("referred_user_id", StrCat("u", Pad7(other.id))).S("device_id", device).S("ip", ip));
        }
        break;
      }
      default:
        if (u.kyc < 2) {
          ++u.kyc;
          Emit(t, "kyc_submit", u, Net(device, ip, session_country_).N("level", StrCat(u.kyc)).S("document_country", kCountries[u.country].code));
        }
        break;
    }
  }

  // --- attacks -----------------------------------------------------------
  struct Burst {
    int64_t day;
    Scenario kind;
    int size;
  };

  void PlanAttacks() {
    Random r = Random::Derive(c_.seed, 0xa77ac);
    const double scale = static_cast<double>(c_.users) / 10000.0;
    // The first burst of each kind lands in the first quarter of the period,
    // so that a short run shows every attack and, later, its labels.
    auto plan = [&](Scenario kind, double total, int lo, int hi) {
      double made = 0;
      const double want = total * scale;
      bool first = true;
      while (made < want) {
        const int size = static_cast<int>(r.Between(lo, hi));
        const int64_t span = first ? std::max<int64_t>(1, c_.days / 4) : std::max<int64_t>(1, c_.days);
        bursts_.push_back(Burst{static_cast<int64_t>(r.Below(static_cast<uint64_t>(span))), kind, size});
        made += kind == kBot ? size : 1;
        first = false;
      }
    };
    plan(kBot, c_.bot_accounts, 5, 10);
    plan(kPromo, c_.promo_rings, 5, 15);
    plan(kFake, c_.fake_signup_bursts, 10, 30);
  }

  void AttacksOfTheDay(Random& r) {
    const bool drifted = day_ >= drift_day_;
    for (const Burst& b : bursts_) {
      if (b.day != day_) continue;
      if (b.kind == kBot) BotBurst(r, b.size, drifted);
      if (b.kind == kPromo) PromoRing(r, b.size);
      if (b.kind == kFake) FakeBurst(r, b.size);
    }
    for (User& u : users_) {
      if (u.scenario == kBot && u.signup_ms < day_start_) BotDay(r, u, drifted);
    }
    const double scale = static_cast<double>(c_.users) / 10000.0;
    for (int64_t i = r.Poisson(c_.card_fraud_per_day * scale); i > 0; --i) CardFraud(r, drifted);
    for (int64_t i = r.Poisson(c_.takeovers_per_day * scale); i > 0; --i) Takeover(r);
  }

  void BotBurst(Random& r, int n, bool drifted) {
    int64_t t = day_start_ + static_cast<int64_t>(r.Uniform() * 20 * kMsPerHour);
    const int block = static_cast<int>(r.Below(1000));
    for (int i = 0; i < n; ++i) {
      User& u = NewUser(r, kBot, PickCountry(r, false));
      u.signup_ms = t;
      const std::string ip = drifted ? HomeIp(r, u.country) : DatacenterIp(r, block);
      Signup(r, u, t, u.devices[0], ip, u.country, drifted ? kBrowserAgents[0] : kBotAgent, nullptr);
      Emit(t + 2 * kMsPerMinute, "api_key_create", u, Net(u.devices[0], ip, u.country).S("permissions", "trade"));
      u.home_ip = ip;
      u.rate = static_cast<double>(r.Between(300, 900));  // seconds between trades
      t += static_cast<int64_t>(r.Exponential(40 * kMsPerSecond)) + kMsPerSecond;
    }
  }

  // A scripted account: trades through the API at a fixed interval for
  // hours a day (with jitter after the drift).
  void BotDay(Random& r, User& u, bool drifted) {
    const bool careful = drifted || (u.id % 10) < static_cast<uint32_t>(c_.evasive_share * 10);
    const int64_t interval = static_cast<int64_t>(u.rate) * kMsPerSecond;
    int64_t t = day_start_ + (u.id % 12) * kMsPerHour;
    const int64_t stop = t + 6 * kMsPerHour;
    const std::string ip = drifted ? HomeIp(r, u.country) : u.home_ip;
    Emit(t - kMsPerMinute, "login", u, Net(u.devices[0], ip, u.country).N("success", "true")
                                          .S("user_agent", drifted ? kBrowserAgents[0] : kBotAgent));
    const char* pairs[] = {"BTC-USDT", "ETH-USDT"};
    for (; t < stop; t += interval + (careful ? static_cast<int64_t>(r.Normal(0, 60000)) : r.Between(-500, 500))) {
      Emit(t, "trade", u, Net(careful ? u.devices[0] : "", ip, u.country).S("pair", pairs[u.id % 2]).S("side", r.Chance(0.5) ? "buy" : "sell")
                              .S("amount_usd", Usd(r.Uniform(40, 60))).S("via", "api"));
    }
  }

  void PromoRing(Random& r, int n) {
    int64_t t = day_start_ + static_cast<int64_t>(r.Uniform() * 18 * kMsPerHour);
    const int country = PickCountry(r, false);
    const bool careful = r.Chance(c_.evasive_share);
    std::vector<std::string> devices = {Device(r), Device(r)};
    if (careful) {
      for (int i = 0; i < 3; ++i) devices.push_back(Device(r));
    }
    const Card card = NewCard(r, country);
    const std::string payout = Wallet(r, false);
    const Country& c = kCountries[country];
    const int c3 = static_cast<int>(r.Below(200));
    int64_t referrer = -1;  // index: users_ grows below, so no references into it
    for (int i = 0; i < n; ++i) {
      User& u = NewUser(r, kPromo, country);
      u.signup_ms = t;
      const std::string& device = devices[r.Below(devices.size())];
      const std::string ip = careful ? (r.Chance(0.5) ? MobileIp(r, country) : HomeIp(r, country))
                                     : Ip(c.ip_a, c.ip_b, c3, 1 + static_cast<int>(r.Below(254)));
      Signup(r, u, t, device, ip, country, kBrowserAgents[r.Below(4)],
             referrer >= 0 ? &users_[static_cast<size_t>(referrer)] : nullptr);
      int64_t s = t + static_cast<int64_t>(r.Exponential(10 * kMsPerMinute)) + kMsPerMinute;
      Emit(s, "promo_redeem", u, Net(device, ip, country).S("promo", "signup_bonus").S("amount_usd", "10.00"));
      if (referrer >= 0) {
        const User& ref = users_[static_cast<size_t>(referrer)];
        Emit(s + kMsPerMinute, "promo_redeem", ref, Net(device, ip, country).S("promo", "referral_bonus").S("amount_usd", "10.00"));
      }
      s += static_cast<int64_t>(r.Exponential(30 * kMsPerMinute)) + kMsPerMinute;
      Emit(s, "deposit", u, Net(device, ip, country).S("method", "card").S("amount", "20.00").S("asset", "USD")
                                .S("amount_usd", "20.00").S("card_id", card.id).S("card_bin", card.bin)
                                .S("card_country", kCountries[card.country].code));
      s += static_cast<int64_t>(r.Exponential(2 * kMsPerHour)) + kMsPerMinute;
      Emit(s, "trade", u, Net(device, ip, country).S("pair", "BTC-USD").S("side", "buy").S("amount_usd", "30.00").S("via", "web"));
      s += static_cast<int64_t>(r.Exponential(6 * kMsPerHour)) + kMsPerMinute;
      if (s < day_start_ + kMsPerDay) {
        Emit(s, "withdrawal", u, Net(device, ip, country).S("asset", "BTC").S("amount", Amount(29, kAssets[3]))
                                     .S("amount_usd", "29.00").S("wallet", payout));
      }
      referrer = static_cast<int64_t>(users_.size()) - 1;
      t += static_cast<int64_t>(r.Exponential(careful ? kMsPerHour : 15 * kMsPerMinute)) + kMsPerMinute;
    }
  }

  void FakeBurst(Random& r, int n) {
    int64_t t = day_start_ + static_cast<int64_t>(r.Uniform() * 22 * kMsPerHour);
    const int country = PickCountry(r, false);
    const Country& c = kCountries[country];
    const int c3 = static_cast<int>(r.Below(200));
    const std::string first = kFirst[r.Below(std::size(kFirst))];
    const std::string last = kLast[r.Below(std::size(kLast))];
    const int64_t base = r.Between(1000, 9000);
    const std::string device = Device(r);
    const bool careful = r.Chance(c_.evasive_share);
    for (int i = 0; i < n; ++i) {
      User& u = NewUser(r, kFake, country);
      u.signup_ms = t;
      u.email = StrCat(first, ".", last, base + i, "@",
                       careful && r.Chance(0.5) ? kMailDomains[r.Below(std::size(kMailDomains))]
                                                : kDisposable[r.Below(std::size(kDisposable))]);
      const std::string ip = careful ? HomeIp(r, country) : Ip(c.ip_a, c.ip_b, c3, 10 + i % 200);
      Signup(r, u, t, r.Chance(0.5) ? device : u.devices[0], ip, country, kBrowserAgents[r.Below(4)], nullptr);
      if (r.Chance(0.5)) {
        Emit(t + kMsPerMinute, "promo_redeem", u, Net(u.devices[0], ip, country).S("promo", "signup_bonus").S("amount_usd", "10.00"));
      }
      t += static_cast<int64_t>(r.Exponential(20 * kMsPerSecond)) + kMsPerSecond;
    }
  }

  // A stolen card: small test deposits, a large one, a fast crypto withdrawal.
  void CardFraud(Random& r, bool drifted) {
    const bool careful = r.Chance(c_.evasive_share);
    int ip_country = drifted ? (new_country_ >= 0 ? new_country_ : 1) : 5;  // NG, then the new country
    int card_country;
    do {
      card_country = PickCountry(r, false);
    } while (card_country == ip_country);
    if (careful) ip_country = card_country;  // a residential proxy in the card's country
    User& u = NewUser(r, kCard, ip_country);
    int64_t t = day_start_ + static_cast<int64_t>(r.Uniform() * 20 * kMsPerHour);
    u.signup_ms = t;
    const std::string ip = !careful && r.Chance(0.5) ? VpnIp(r) : HomeIp(r, ip_country);
    Signup(r, u, t, u.devices[0], ip, ip_country, kBrowserAgents[r.Below(4)], nullptr);
    const Card card = NewCard(r, card_country);
    auto deposit = [&](double usd) -> Ev& {
      return Emit(t, "deposit", u, Net(u.devices[0], ip, ip_country).S("method", "card").S("amount", Amount(usd, kAssets[0]))
                                       .S("asset", "USD").S("amount_usd", Usd(usd)).S("card_id", card.id)
                                       .S("card_bin", card.bin).S("card_country", kCountries[card.country].code));
    };
    auto chargeback = [&](Ev& e) {
      if (r.Chance(c_.chargeback_rate)) {
        e.label_kind = kCard;
        // 10 to 60 days, most in the first weeks (median about 13 days).
        const double u = r.Uniform();
        e.label_delay = static_cast<int64_t>((10 + 50 * u * u * u * u) * kMsPerDay);
      }
    };
    for (int64_t i = careful ? r.Between(0, 1) : r.Between(2, 5); i > 0; --i) {
      t += static_cast<int64_t>(r.Exponential(2 * kMsPerMinute)) + kMsPerSecond;
      chargeback(deposit(drifted ? r.Uniform(5, 10) : r.Uniform(1, 5)));
    }
    double total = 0;
    for (int64_t i = r.Between(1, 2); i > 0; --i) {
      t += static_cast<int64_t>(r.Exponential(5 * kMsPerMinute)) + kMsPerSecond;
      const double usd = r.Uniform(200, 2000);
      total += usd;
      chargeback(deposit(usd));
    }
    t += static_cast<int64_t>(careful ? r.Uniform(2, 20) * kMsPerHour : r.Uniform(5, 30) * kMsPerMinute);
    Emit(t, "withdrawal", u, Net(u.devices[0], ip, ip_country).S("asset", "BTC").S("amount", Amount(total * 0.97, kAssets[3]))
                                 .S("amount_usd", Usd(total * 0.97)).S("wallet", Wallet(r, false)));
  }

  // A genuine account taken over: a reset from a new device and country,
  // then a withdrawal to a new address within hours.
  void Takeover(Random& r) {
    if (genuine_ == 0) return;
    // A victim with some history: signed up before today.
    size_t v = r.Below(genuine_);
    for (int tries = 0; tries < 20 && users_[v].signup_ms >= day_start_; ++tries) v = r.Below(genuine_);
    User& victim = users_[v];
    if (victim.signup_ms >= day_start_) return;
    User thief = victim;  // the attacker acts as the victim's account
    thief.scenario = kTakeover;
    int64_t t = day_start_ + static_cast<int64_t>(r.Uniform() * 20 * kMsPerHour);
    const bool careful = r.Chance(c_.evasive_share);
    const int country = careful ? victim.country
                                : (victim.country + 1 + static_cast<int>(r.Below(kNumCountries - 2))) %
                                      (kNumCountries - 1);
    const std::string device = Device(r);
    const std::string ip = !careful && r.Chance(0.6) ? VpnIp(r) : HomeIp(r, country);
    if (r.Chance(0.6)) {
      Emit(t, "password_reset", thief, Net(device, ip, country));
    } else {
      Emit(t, "2fa_change", thief, Net(device, ip, country).S("method", "none"));
    }
    t += static_cast<int64_t>(r.Uniform(1, 10) * kMsPerMinute);
    Emit(t, "login", thief, Net(device, ip, country).N("success", "true").S("user_agent", kBrowserAgents[r.Below(4)]));
    t += static_cast<int64_t>(r.Uniform(0.2, 6) * kMsPerHour);
    const double usd = r.Uniform(500, 5000);
    Ev& w = Emit(t, "withdrawal", thief, Net(device, ip, country).S("asset", "BTC").S("amount", Amount(usd, kAssets[3]))
                                             .S("amount_usd", Usd(usd)).S("wallet", Wallet(r, false)));
    if (r.Chance(c_.takeover_confirm_rate)) {
      w.label_kind = kTakeover;
      const double u = r.Uniform();  // 1 to 14 days, most within the first week
      w.label_delay = static_cast<int64_t>((1 + 13 * u * u) * kMsPerDay);
    }
  }

  // --- output ------------------------------------------------------------
  void Flush() {
    std::stable_sort(evs_.begin(), evs_.end(), [](const Ev& a, const Ev& b) {
      return a.t != b.t ? a.t < b.t : a.seq < b.seq;
    });
    const int64_t day_end = day_start_ + kMsPerDay;
    size_t i = 0;
    std::string line;
    // Events generated today that fall after midnight (a late session's
    // actions) are written with the next day's.
    while (true) {
      const bool have_ev = i < evs_.size() && evs_[i].t < day_end;
      const bool have_label = !labels_.empty() && labels_.top().t < day_end;
      if (!have_ev && !have_label) break;
      line.clear();
      const std::string id = NextId();
      if (have_label && (!have_ev || labels_.top().t <= evs_[i].t)) {
        const PendingLabel& l = labels_.top();
        StrAppend(&line, "{\"event_id\":\"", id, "\",\"event_type\":\"label\",\"time\":\"");
        core::AppendTimestamp(l.t, &line);
        StrAppend(&line, "\"", l.body, "}");
        labels_.pop();
        ++stats_->labels;
        ++stats_->by_type["label"];
      } else {
        const Ev& e = evs_[i++];
        StrAppend(&line, "{\"event_id\":\"", id, "\",\"event_type\":\"", e.type, "\",\"time\":\"");
        core::AppendTimestamp(e.t, &line);
        StrAppend(&line, "\"", e.body, "}");
        ++stats_->by_type[e.type];
        if (e.scenario != kGenuine) {
          ++stats_->by_scenario[kScenarioName[e.scenario]];
        } else {
          ++stats_->genuine_events;
        }
        if (e.label_kind) {
          PendingLabel l{e.t + e.label_delay, seq_++, ""};
          StrAppend(&l.body, ",\"kind\":\"", kLabelKind[e.label_kind], "\",");
          if (e.label_entity) {
            StrAppend(&l.body, "\"target_entity\":{\"key\":\"user_id\",\"value\":\"u", Pad7(e.user), "\"}");
          } else {
            StrAppend(&l.body, "\"target_event_id\":\"", id, "\"");
          }
          l.body += ",\"value\":1";
          if (l.t < end_ms_) {
            labels_.push(std::move(l));
          } else {
            ++stats_->labels_after_end;
          }
        }
      }
      ++stats_->events;
      stats_->bytes += static_cast<int64_t>(line.size()) + 1;
      sink_(line);
    }
    evs_.erase(evs_.begin(), evs_.begin() + static_cast<ptrdiff_t>(i));
  }

  std::string NextId() {
    char buf[24];
    snprintf(buf, sizeof buf, "e%012llu", static_cast<unsigned long long>(++ids_));
    return buf;
  }

  const SimConfig& c_;
  const std::function<void(std::string_view)>& sink_;
  SimStats* stats_;
  Random rng_;
  int64_t drift_day_ = 0;
  int64_t end_ms_ = 0;
  int new_country_ = -1;
  std::vector<User> users_;
  size_t genuine_ = 0;
  std::vector<Burst> bursts_;
  std::vector<Ev> evs_;
  std::priority_queue<PendingLabel, std::vector<PendingLabel>, std::greater<>> labels_;
  int64_t day_ = 0;
  int64_t day_start_ = 0;
  int session_country_ = 0;  // where the current genuine session comes from
  uint64_t seq_ = 0;
  uint64_t ids_ = 0;
};

}  // namespace

absl::Status SimConfig::Merge(const core::ConfigNode& y) {
  if (!y.IsDefined() || y.IsNull()) return absl::OkStatus();
  VIGIL_RETURN_IF_ERROR(y.CheckKeys(
      {"users", "days", "seed", "start", "existing_share", "sessions_median", "sessions_sigma",
       "weekend_factor", "family_share", "office_share", "mobile_share", "pro_share",
       "travel_share", "vpn_user_share", "api_trader_share", "small_card_share",
       "bot_accounts", "promo_rings", "card_fraud_per_day", "takeovers_per_day",
       "fake_signup_bursts", "evasive_share", "attacker_young_share", "chargeback_rate", "takeover_confirm_rate",
       "abuse_found_rate", "drift_day", "new_country"}));
  VIGIL_ASSIGN_OR_RETURN(users, y.GetInt("users", users));
  VIGIL_ASSIGN_OR_RETURN(days, y.GetInt("days", days));
  VIGIL_ASSIGN_OR_RETURN(int64_t s, y.GetInt("seed", static_cast<int64_t>(seed)));
  seed = static_cast<uint64_t>(s);
  if (y["start"].IsDefined()) {
    auto t = core::ParseTimestamp(y["start"].Text());
    if (!t.ok()) return y["start"].Error(std::string(t.status().message()));
    start_ms = *t;
  }
  struct D {
    const char* key;
    double* v;
  };
  for (const D& d : {D{"existing_share", &existing_share}, D{"sessions_median", &sessions_median},
                     D{"sessions_sigma", &sessions_sigma}, D{"weekend_factor", &weekend_factor},
                     D{"family_share", &family_share}, D{"office_share", &office_share},
                     D{"mobile_share", &mobile_share}, D{"pro_share", &pro_share},
                     D{"travel_share", &travel_share}, D{"vpn_user_share", &vpn_user_share},
                     D{"api_trader_share", &api_trader_share},
                     D{"small_card_share", &small_card_share},
                     D{"bot_accounts", &bot_accounts}, D{"promo_rings", &promo_rings},
                     D{"card_fraud_per_day", &card_fraud_per_day},
                     D{"takeovers_per_day", &takeovers_per_day},
                     D{"fake_signup_bursts", &fake_signup_bursts},
                     D{"evasive_share", &evasive_share},
                     D{"attacker_young_share", &attacker_young_share},
                     D{"chargeback_rate", &chargeback_rate},
                     D{"takeover_confirm_rate", &takeover_confirm_rate},
                     D{"abuse_found_rate", &abuse_found_rate}}) {
    VIGIL_ASSIGN_OR_RETURN(*d.v, y.GetDouble(d.key, *d.v));
    if (*d.v < 0) return y[d.key].Error(StrCat(d.key, " must not be negative"));
  }
  VIGIL_ASSIGN_OR_RETURN(drift_day, y.GetInt("drift_day", drift_day));
  VIGIL_ASSIGN_OR_RETURN(new_country, y.GetString("new_country", new_country));
  return absl::OkStatus();
}

SimStats SimulateTo(const SimConfig& config, const std::function<void(std::string_view)>& line) {
  SimStats stats;
  World w(config, line, &stats);
  w.Run({});
  return stats;
}

absl::StatusOr<SimStats> Simulate(const SimConfig& config, const std::string& out,
                                  const std::function<void(int64_t, int64_t)>& progress) {
  if (config.users < 1 || config.users > 10'000'000) {
    return absl::InvalidArgumentError(StrCat("--users ", config.users, ": between 1 and 10,000,000"));
  }
  if (config.days < 1 || config.days > 3650) {
    return absl::InvalidArgumentError(StrCat("--days ", config.days, ": between 1 and 3650"));
  }
  FILE* f = nullptr;
  gzFile gz = nullptr;
  if (out == "-") {
    f = stdout;
  } else if (EndsWith(out, ".gz")) {
    // zlib writes a gzip header with a zero mtime: the file is byte-identical per seed.
    gz = gzopen(out.c_str(), "wb6");
    if (!gz) return absl::InvalidArgumentError(StrCat(out, ": cannot create: ", strerror(errno)));
  } else {
    f = std::fopen(out.c_str(), "wb");
    if (!f) return absl::InvalidArgumentError(StrCat(out, ": cannot create: ", strerror(errno)));
  }
  std::string buf;
  buf.reserve(1 << 20);
  bool ok = true;
  auto flush = [&] {
    if (buf.empty()) return;
    if (gz) {
      ok &= gzwrite(gz, buf.data(), static_cast<unsigned>(buf.size())) == static_cast<int>(buf.size());
    } else {
      ok &= std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
    }
    buf.clear();
  };
  std::function<void(std::string_view)> sink = [&](std::string_view line) {
    buf.append(line);
    buf.push_back('\n');
    if (buf.size() >= (1 << 20)) flush();
  };
  SimStats stats;
  World w(config, sink, &stats);
  w.Run(progress);
  flush();
  if (gz && gzclose(gz) != Z_OK) ok = false;
  if (f && (std::fflush(f) != 0 || (f != stdout && std::fclose(f) != 0))) ok = false;
  if (!ok) return absl::DataLossError(StrCat(out, ": write failed: ", strerror(errno)));
  return stats;
}

}  // namespace vigil::sim
