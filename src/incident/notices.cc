// Notices to affected people and to their organisations' admins (RFC 5322
// .eml files and a mail-merge CSV), the plain-language text they are made
// of, and WriteOutputs, which writes every output file 0600.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "incident/incident.h"
#include "incident/report_text.h"

namespace minpanel::incident {

std::string_view LanguageCode(Language language) {
  return language == Language::kSpanish ? "es" : "en";
}

Language LanguageOf(std::string_view value) {
  std::string lower;
  for (const char byte : value.substr(0, 16)) {
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(byte))));
  }
  if (lower == "es" || lower.starts_with("es-") || lower.starts_with("es_") || lower == "spanish" ||
      lower.starts_with("espa")) {
    return Language::kSpanish;
  }
  return Language::kEnglish;
}

std::string_view CategoryDescription(Category category, Language language) {
  const bool es = language == Language::kSpanish;
  switch (category) {
    case Category::kIdentity:
      return es ? "tu nombre" : "your name";
    case Category::kContact:
      return es ? "tu dirección de correo electrónico o tu teléfono"
                : "your email address or phone number";
    case Category::kLocation:
      return es ? "tu ubicación aproximada (ciudad, región, país) o tu dirección IP"
                : "your approximate location (city, region, country) or IP address";
    case Category::kDevice:
      return es ? "tu dispositivo, sistema operativo y navegador"
                : "your device, operating system and browser";
    case Category::kReferrer:
      return es ? "las páginas web desde las que llegaste y las que visitaste"
                : "the web pages you came from and visited";
    case Category::kInternalIds:
      return es ? "identificadores internos de tu cuenta (no sirven para entrar en ella)"
                : "internal identifiers of your account (they cannot be used to sign in)";
    case Category::kCredentials:
      return es ? "credenciales (contraseñas cifradas, claves o tokens)"
                : "credentials (password hashes, keys or tokens)";
    case Category::kPayment:
      return es ? "datos de pago (números de tarjeta o cuentas bancarias)"
                : "payment data (card numbers or bank accounts)";
    case Category::kContent:
      return es ? "contenido que escribiste (mensajes, notas)"
                : "content you wrote (messages, notes)";
    case Category::kAccount:
      return es ? "datos de tu cuenta (rol, idioma, organización)"
                : "account details (role, language, organisation)";
    case Category::kActivity:
      return es ? "registros de actividad (acciones y sus horas)"
                : "activity records (actions and when they happened)";
    case Category::kNone:
      break;
  }
  return es ? "otros datos" : "other data";
}

std::string_view KindDescription(ColumnKind kind, Language language) {
  const bool es = language == Language::kSpanish;
  switch (kind) {
    case ColumnKind::kEmail:
    case ColumnKind::kAdminEmail:
      return es ? "tu dirección de correo electrónico" : "your email address";
    case ColumnKind::kPhone:
      return es ? "tu número de teléfono" : "your phone number";
    case ColumnKind::kFullName:
    case ColumnKind::kFirstName:
    case ColumnKind::kLastName:
      return es ? "tu nombre" : "your name";
    case ColumnKind::kUsername:
      return es ? "tu nombre de usuario" : "your username";
    case ColumnKind::kIpAddress:
      return es ? "tu dirección IP" : "your IP address";
    case ColumnKind::kCity:
    case ColumnKind::kRegion:
    case ColumnKind::kCountry:
    case ColumnKind::kTimeZone:
      return es ? "tu ciudad, región o país" : "your city, region or country";
    case ColumnKind::kPostalCode:
    case ColumnKind::kStreetAddress:
      return es ? "tu dirección postal" : "your postal address";
    case ColumnKind::kCoordinates:
      return es ? "tus coordenadas geográficas" : "your geographic coordinates";
    case ColumnKind::kUserAgent:
    case ColumnKind::kOs:
    case ColumnKind::kBrowser:
    case ColumnKind::kDevice:
      return es ? "tu dispositivo, sistema operativo y navegador"
                : "your device, operating system and browser";
    case ColumnKind::kReferrer:
      return es ? "las páginas web desde las que llegaste" : "the web pages you came from";
    case ColumnKind::kUrl:
      return es ? "las páginas que visitaste" : "the pages you visited";
    case ColumnKind::kUserId:
    case ColumnKind::kAnonymousId:
    case ColumnKind::kOrgId:
    case ColumnKind::kAdminUserId:
      return es ? "identificadores internos de tu cuenta y organización (no sirven para entrar)"
                : "internal identifiers of your account and organisation (they cannot be used "
                  "to sign in)";
    case ColumnKind::kPassword:
      return es ? "tu contraseña" : "your password";
    case ColumnKind::kPasswordHash:
      return es ? "tu contraseña cifrada (hash)" : "your password in hashed form";
    case ColumnKind::kSecret:
      return es ? "claves o tokens de acceso" : "access keys or tokens";
    case ColumnKind::kCardNumber:
    case ColumnKind::kPaymentDetail:
      return es ? "datos de tu tarjeta de pago" : "your payment card details";
    case ColumnKind::kIban:
      return es ? "tu cuenta bancaria" : "your bank account number";
    case ColumnKind::kContent:
      return es ? "contenido que escribiste" : "content you wrote";
    case ColumnKind::kRole:
    case ColumnKind::kLanguage:
    case ColumnKind::kOrgName:
      return es ? "datos de tu cuenta (rol, idioma, organización)"
                : "account details (role, language, organisation)";
    case ColumnKind::kTimestamp:
    case ColumnKind::kEventName:
      return es ? "registros de tu actividad en nuestro servicio"
                : "records of your activity in our service";
    case ColumnKind::kUnknown:
    case ColumnKind::kIgnore:
      break;
  }
  return es ? "otros campos del registro" : "other fields of the record";
}

std::string_view NotInFileSentence(Category category, Language language) {
  const bool es = language == Language::kSpanish;
  switch (category) {
    case Category::kCredentials:
      return es ? "El archivo no contiene contraseñas, contraseñas cifradas, claves ni tokens."
                : "The file holds no passwords, password hashes, API keys or tokens.";
    case Category::kPayment:
      return es ? "El archivo no contiene datos de pago: ni números de tarjeta ni cuentas "
                  "bancarias."
                : "The file holds no payment data: no card numbers and no bank accounts.";
    case Category::kContent:
      return es ? "El archivo no contiene contenido que hayas escrito (mensajes, notas, "
                  "documentos)."
                : "The file holds no content you wrote (messages, notes, documents).";
    default:
      break;
  }
  return "";
}

std::vector<std::string_view> LikelyConsequences(uint32_t file_categories) {
  const auto has = [file_categories](Category category) {
    return ((file_categories >> static_cast<uint32_t>(category)) & 1) != 0;
  };
  std::vector<std::string_view> consequences;
  if (has(Category::kContact)) {
    consequences.push_back(
        "Phishing and spam aimed at the exposed email addresses or phone numbers, made more "
        "convincing by mentioning the company or this incident.");
  }
  if (has(Category::kIdentity) && has(Category::kContact)) {
    consequences.push_back(
        "Targeted social engineering and impersonation, since names and contact details appear "
        "together.");
  }
  if (has(Category::kLocation)) {
    consequences.push_back(
        "Disclosure of approximate location (city, region, country, IP address); a risk to "
        "people for whom their whereabouts are sensitive.");
  }
  if (has(Category::kDevice) || has(Category::kReferrer)) {
    consequences.push_back(
        "Profiling from device, browser and browsing data (pages visited and where visitors "
        "came from), which can reveal interests.");
  }
  if (has(Category::kCredentials)) {
    consequences.push_back(
        "Account takeover, on this service and elsewhere where passwords were reused, until "
        "the exposed credentials are reset or revoked.");
  }
  if (has(Category::kPayment)) {
    consequences.push_back("Payment fraud with the exposed card or bank account data.");
  }
  if (has(Category::kContent)) {
    consequences.push_back("Disclosure of what people wrote, which may itself be sensitive.");
  }
  if (consequences.empty()) {
    consequences.push_back(
        "Low: the file holds internal identifiers and activity only; assess whether they can "
        "be linked to people by whoever holds them.");
  }
  return consequences;
}

namespace {

constexpr std::string_view kUserEnglish =
    R"(Subject: {{company}}: a security incident exposed some of your data

Hello{{greeting_name}},

We are writing to tell you about a security incident that involved some of your personal data. An analytics dataset held by a service provider of {{company}} was obtained by an unauthorised party. We became aware of it on {{detected}}.

What of yours was in the file:
{{exposed}}

What was not in the file:
{{not_exposed}}

What we have done:
{{measures}}

How to check that this message is genuine:
- This message contains no links and no attachments, and it asks you to do nothing in reply.
- We will never ask you for your password, verification codes or payment details by email, phone or text message. Anyone who does is not us.
- To check, open your browser, type {{domain}} yourself and sign in as usual, or contact us through: {{contact}}

What we recommend:
- Turn on multi-factor authentication for your {{company}} account.
- Be wary of messages that mention this incident and press you to act quickly.

{{company}}
)";

constexpr std::string_view kUserSpanish =
    R"(Subject: {{company}}: un incidente de seguridad expuso algunos de tus datos

Hola{{greeting_name}}:

Te escribimos para informarte de un incidente de seguridad que afectó a algunos de tus datos personales. Un conjunto de datos de analítica que custodiaba un proveedor de {{company}} fue obtenido por un tercero no autorizado. Tuvimos conocimiento el {{detected}}.

Qué datos tuyos había en el archivo:
{{exposed}}

Qué no había en el archivo:
{{not_exposed}}

Qué hemos hecho:
{{measures}}

Cómo comprobar que este mensaje es auténtico:
- Este mensaje no contiene enlaces ni adjuntos y no te pide que respondas con nada.
- Nunca te pediremos tu contraseña, códigos de verificación ni datos de pago por correo, teléfono o mensaje. Quien lo haga no somos nosotros.
- Para comprobarlo, abre tu navegador, escribe tú mismo {{domain}} e inicia sesión como siempre, o contacta con nosotros en: {{contact}}

Qué te recomendamos:
- Activa la autenticación multifactor en tu cuenta de {{company}}.
- Desconfía de mensajes que mencionen este incidente y te presionen para actuar deprisa.

{{company}}
)";

constexpr std::string_view kAdminEnglish =
    R"(Subject: {{company}}: a security incident affected users of {{org_name}}

Hello{{greeting_name}},

You are receiving this as an administrator of {{org_name}} ({{org_id}}) at {{company}}. An analytics dataset held by a service provider of {{company}} was obtained by an unauthorised party. We became aware of it on {{detected}}.

Users of your organisation affected: {{affected_count}}
Of them, by category of data exposed:
{{by_category}}

What was not in the file:
{{not_exposed}}

Each affected user receives their own notice listing only their own data. What we have done:
{{measures}}

How to check that this message is genuine:
- This message contains no links and no attachments, and it asks you to do nothing in reply.
- We will never ask you for your password, verification codes or payment details by email, phone or text message. Anyone who does is not us.
- To check, open your browser, type {{domain}} yourself and sign in as usual, or contact us through: {{contact}}

What we recommend:
- Require multi-factor authentication for every user of your organisation.
- Warn your users about messages that mention this incident and press them to act quickly.

{{company}}
)";

constexpr std::string_view kAdminSpanish =
    R"(Subject: {{company}}: un incidente de seguridad afectó a usuarios de {{org_name}}

Hola{{greeting_name}}:

Recibes este mensaje como administrador de {{org_name}} ({{org_id}}) en {{company}}. Un conjunto de datos de analítica que custodiaba un proveedor de {{company}} fue obtenido por un tercero no autorizado. Tuvimos conocimiento el {{detected}}.

Usuarios de tu organización afectados: {{affected_count}}
De ellos, por categoría de datos expuestos:
{{by_category}}

Qué no había en el archivo:
{{not_exposed}}

Cada usuario afectado recibe su propio aviso con solo sus datos. Qué hemos hecho:
{{measures}}

Cómo comprobar que este mensaje es auténtico:
- Este mensaje no contiene enlaces ni adjuntos y no te pide que respondas con nada.
- Nunca te pediremos tu contraseña, códigos de verificación ni datos de pago por correo, teléfono o mensaje. Quien lo haga no somos nosotros.
- Para comprobarlo, abre tu navegador, escribe tú mismo {{domain}} e inicia sesión como siempre, o contacta con nosotros en: {{contact}}

Qué te recomendamos:
- Exige la autenticación multifactor a todos los usuarios de tu organización.
- Avisa a tus usuarios de mensajes que mencionen este incidente y les presionen para actuar deprisa.

{{company}}
)";

}  // namespace

std::string_view BuiltInTemplate(Language language, bool admin) {
  if (language == Language::kSpanish) {
    return admin ? kAdminSpanish : kUserSpanish;
  }
  return admin ? kAdminEnglish : kUserEnglish;
}

// An address a notice may be sent to: one '@', no spaces, quotes, angle
// brackets, commas or control bytes (which would break or inject headers).
bool DeliverableAddress(std::string_view email) {
  if (email.empty() || email.size() > 254 || email.find('@') == std::string_view::npos ||
      email.find('@') != email.rfind('@')) {
    return false;
  }
  return std::none_of(email.begin(), email.end(), [](char byte) {
    return static_cast<unsigned char>(byte) <= 0x20 || byte == '<' || byte == '>' || byte == ',' ||
           byte == '"' || byte == ';' || byte == '\\' || byte == 0x7f;
  });
}

namespace {

bool HasControlBytes(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char byte) { return static_cast<unsigned char>(byte) < 0x20; });
}

bool LooksLikeLink(std::string_view text) {
  std::string lower;
  for (const char byte : text) {
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(byte))));
  }
  return lower.find("://") != std::string::npos || lower.find("www.") != std::string::npos ||
         lower.find("http") != std::string::npos || lower.find('/') != std::string::npos;
}

std::string Substitute(std::string_view text,
                       const std::vector<std::pair<std::string_view, std::string>>& values) {
  std::string out;
  size_t offset = 0;
  while (offset < text.size()) {
    const size_t open = text.find("{{", offset);
    if (open == std::string_view::npos) {
      out.append(text.substr(offset));
      break;
    }
    out.append(text.substr(offset, open - offset));
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      out.append(text.substr(open));
      break;
    }
    const std::string_view name = text.substr(open + 2, close - open - 2);
    bool known = false;
    for (const auto& [key, value] : values) {
      if (key == name) {
        out += value;
        known = true;
        break;
      }
    }
    if (!known) {
      out.append(text.substr(open, close + 2 - open));
    }
    offset = close + 2;
  }
  return out;
}

std::string Bullets(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    out += "- " + item + "\n";
  }
  if (!out.empty()) {
    out.pop_back();
  }
  return out;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t idx = 0; idx < bytes.size(); idx += 3) {
    const uint32_t a = static_cast<unsigned char>(bytes[idx]);
    const uint32_t b = idx + 1 < bytes.size() ? static_cast<unsigned char>(bytes[idx + 1]) : 0;
    const uint32_t c = idx + 2 < bytes.size() ? static_cast<unsigned char>(bytes[idx + 2]) : 0;
    const uint32_t triple = (a << 16) | (b << 8) | c;
    out.push_back(kAlphabet[(triple >> 18) & 63]);
    out.push_back(kAlphabet[(triple >> 12) & 63]);
    out.push_back(idx + 1 < bytes.size() ? kAlphabet[(triple >> 6) & 63] : '=');
    out.push_back(idx + 2 < bytes.size() ? kAlphabet[triple & 63] : '=');
  }
  return out;
}

// A header value: as is when ASCII, else an RFC 2047 encoded word.
std::string HeaderText(std::string_view text) {
  const bool ascii = std::all_of(text.begin(), text.end(),
                                 [](char byte) { return static_cast<unsigned char>(byte) < 0x80; });
  return ascii ? std::string(text) : "=?UTF-8?B?" + Base64(text) + "?=";
}

std::string RfcDate(int64_t seconds) {
  const std::time_t time = static_cast<std::time_t>(seconds);
  std::tm parts{};
  gmtime_r(&time, &parts);
  char text[64];
  std::strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S +0000", &parts);
  return text;
}

struct Notice {
  std::string subject;
  std::string body;
};

// Splits a filled template into its "Subject:" line and the body.
Notice SplitNotice(const std::string& filled) {
  Notice notice;
  std::string_view text = filled;
  if (text.starts_with("Subject:")) {
    const size_t end = text.find('\n');
    std::string_view subject = text.substr(8, end - 8);
    while (!subject.empty() && subject.front() == ' ') {
      subject.remove_prefix(1);
    }
    notice.subject = std::string(subject);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
  }
  while (text.starts_with("\n")) {
    text.remove_prefix(1);
  }
  notice.body = std::string(text);
  return notice;
}

std::string Eml(const ReportOptions& options, std::string_view to, const Notice& notice,
                std::string_view message_id) {
  std::string out;
  out += "From: " + HeaderText(options.company) + " <" + options.from_address + ">\r\n";
  out += "To: <" + std::string(to) + ">\r\n";
  out += "Subject: " + HeaderText(notice.subject) + "\r\n";
  out += "Date: " + RfcDate(options.now_s) + "\r\n";
  // The run's time keeps the ids of two runs apart: a provider may drop a
  // message whose Message-ID it has already seen.
  out += "Message-ID: <" + std::string(message_id) + "." + std::to_string(options.now_s) + "@" +
         options.domain + ">\r\n";
  out +=
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n";
  for (const char byte : notice.body) {
    if (byte == '\n') {
      out += "\r\n";
    } else if (byte != '\r') {
      out.push_back(byte);
    }
  }
  return out;
}

std::string CsvField(std::string_view text) {
  std::string out = "\"";
  // A leading = + - @ would be a formula in a spreadsheet.
  if (!text.empty() && std::string_view("=+-@\t\r").find(text.front()) != std::string_view::npos) {
    out.push_back('\'');
  }
  for (const char byte : text) {
    if (byte == '"') {
      out.push_back('"');
    }
    out.push_back(byte == '\n' || byte == '\r' ? ' ' : byte);
  }
  return out + "\"";
}

class OutputFolder {
 public:
  explicit OutputFolder(std::string root) : root_(std::move(root)) {}

  Status Create() {
    std::error_code error;
    if (std::filesystem::exists(root_, error) && !std::filesystem::is_empty(root_, error)) {
      return Status::InvalidArgument("--out " + root_ +
                                     ": the folder is not empty (notices and the impact file "
                                     "are never written over)");
    }
    if (::mkdir(root_.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::IoError("--out " + root_ + ": " + std::strerror(errno));
    }
    if (::chmod(root_.c_str(), 0700) != 0) {
      return Status::IoError("--out " + root_ + ": chmod: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  Status Folder(const std::string& relative) {
    const std::string path = root_ + "/" + relative;
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::IoError(path + ": " + std::strerror(errno));
    }
    return Status::Ok();
  }

  Status Write(const std::string& relative, std::string_view text) {
    return WriteStreamed(relative, [text](const auto& sink) { return sink(text); });
  }

  // A file written in pieces: `produce` hands them to the sink it is given.
  Status WriteStreamed(
      const std::string& relative,
      const std::function<Status(const std::function<Status(std::string_view)>&)>& produce) {
    const std::string path = root_ + "/" + relative;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Status::IoError(path + ": " + std::strerror(errno));
    }
    const auto sink = [&](std::string_view text) -> Status {
      size_t done = 0;
      while (done < text.size()) {
        const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
        if (wrote < 0 && errno == EINTR) {
          continue;
        }
        if (wrote <= 0) {
          return Status::IoError(path + ": write: " + std::strerror(errno));
        }
        done += static_cast<size_t>(wrote);
      }
      return Status::Ok();
    };
    const Status produced = produce(sink);
    if (::close(fd) != 0 && produced.ok()) {
      return Status::IoError(path + ": close: " + std::strerror(errno));
    }
    MP_RETURN_IF_ERROR(produced);
    written_.push_back(relative);
    return Status::Ok();
  }

  std::vector<std::string>& written() { return written_; }

 private:
  std::string root_;
  std::vector<std::string> written_;
};

struct Templates {
  std::array<std::string, kLanguageCount> user;
  std::array<std::string, kLanguageCount> admin;
};

Result<Templates> LoadTemplates(const std::string& folder) {
  Templates templates;
  for (size_t language_idx = 0; language_idx < kLanguageCount; ++language_idx) {
    const Language language = static_cast<Language>(language_idx);
    for (const bool admin : {false, true}) {
      std::string text(BuiltInTemplate(language, admin));
      if (!folder.empty()) {
        const std::string path = folder + "/" + std::string(LanguageCode(language)) + "/" +
                                 (admin ? "admin.txt" : "user.txt");
        std::error_code error;
        if (std::filesystem::exists(path, error)) {
          FILE* file = std::fopen(path.c_str(), "rb");
          if (file == nullptr) {
            return Status::IoError(path + ": " + std::strerror(errno));
          }
          text.clear();
          char buffer[4096];
          size_t got = 0;
          while ((got = std::fread(buffer, 1, sizeof(buffer), file)) > 0 &&
                 text.size() <= kOperatorTextBytesMax * 16) {
            text.append(buffer, got);
          }
          std::fclose(file);
          if (text.size() > kOperatorTextBytesMax * 16) {
            return Status::ResourceExhausted(path + ": a template over " +
                                             std::to_string(kOperatorTextBytesMax * 16) + " bytes");
          }
          if (text.find("://") != std::string::npos) {
            return Status::InvalidArgument(path +
                                           ": a template must not hold links (notices carry "
                                           "none; name the bare domain with {{domain}})");
          }
        }
      }
      (admin ? templates.admin : templates.user)[language_idx] = std::move(text);
    }
  }
  return templates;
}

struct NoticeContext {
  const CrossrefInput& input;
  const Impact& impact;
  const ReportOptions& options;
  const Templates& templates;
  std::vector<std::pair<std::string_view, std::string>> common;
};

Language AccountLanguage(const CrossrefInput& input, size_t row) {
  return LanguageOf(CellOf(*input.accounts, *input.account_columns, row, ColumnKind::kLanguage));
}

std::string GreetingName(const CrossrefInput& input, size_t row) {
  std::string_view name =
      CellOf(*input.accounts, *input.account_columns, row, ColumnKind::kFullName);
  if (name.empty()) {
    name = CellOf(*input.accounts, *input.account_columns, row, ColumnKind::kFirstName);
  }
  if (name.empty() || HasControlBytes(name) || name.size() > 100 || LooksLikeLink(name)) {
    return "";
  }
  return " " + std::string(name);
}

std::string NotExposedList(const Impact& impact, Language language) {
  std::vector<std::string> items;
  for (const Category category : NotInFile(impact.file_categories)) {
    items.emplace_back(NotInFileSentence(category, language));
  }
  if (items.empty()) {
    items.emplace_back(language == Language::kSpanish
                           ? "Ver la lista anterior: el archivo contiene todas las categorías."
                           : "See the list above: the file holds every category.");
  }
  return Bullets(items);
}

std::string ExposedList(const CrossrefInput& input, const Exposure& exposure, Language language) {
  std::vector<std::string> items;
  const auto add = [&items](std::string_view item) {
    if (std::find(items.begin(), items.end(), item) == items.end()) {
      items.emplace_back(item);
    }
  };
  for (const size_t column : exposure.columns) {
    add(KindDescription(input.leaked_columns->columns[column].kind, language));
  }
  // Values found by content in columns of another kind (a card number in a
  // "notes" column): the category, said once.
  for (const Category category : {Category::kPayment, Category::kCredentials}) {
    if (((exposure.categories >> static_cast<uint32_t>(category)) & 1) != 0) {
      add(CategoryDescription(category, language));
    }
  }
  return Bullets(items);
}

Status WriteUserNotices(NoticeContext& context, OutputFolder& folder, std::string* merge,
                        OutputFiles* files) {
  MP_RETURN_IF_ERROR(folder.Folder("notices/users"));
  for (size_t account_idx = 0; account_idx < context.impact.accounts.size(); ++account_idx) {
    const AccountImpact& account = context.impact.accounts[account_idx];
    const size_t row = account.account_row;
    const std::string_view email =
        CellOf(*context.input.accounts, *context.input.account_columns, row, ColumnKind::kEmail);
    if (!DeliverableAddress(email)) {
      ++files->accounts_without_address;
      continue;
    }
    const Language language = AccountLanguage(context.input, row);
    auto values = context.common;
    values.push_back({"greeting_name", GreetingName(context.input, row)});
    const Exposure& exposure = context.impact.ExposureOf(account);
    values.push_back({"exposed", ExposedList(context.input, exposure, language)});
    values.push_back({"not_exposed", NotExposedList(context.impact, language)});
    const Notice notice =
        SplitNotice(Substitute(context.templates.user[static_cast<size_t>(language)], values));
    char name[32];
    std::snprintf(name, sizeof(name), "u%08zu", account_idx + 1);
    const std::string file = "notices/users/" + std::string(name) + ".eml";
    MP_RETURN_IF_ERROR(folder.Write(file, Eml(context.options, email, notice, name)));
    const std::string_view user_id =
        CellOf(*context.input.accounts, *context.input.account_columns, row, ColumnKind::kUserId);
    std::string categories;
    for (const Category category : CategoriesOf(exposure.categories)) {
      categories += (categories.empty() ? "" : " ") + std::string(CategoryName(category));
    }
    *merge += "\"user\"," + CsvField(email) + "," + CsvField(LanguageCode(language)) + "," +
              CsvField(notice.subject) + "," + CsvField(file) + "," + CsvField(user_id) + "," +
              CsvField(context.impact.LeakedOrgId(account)) + "," + CsvField(categories) + "\r\n";
    ++files->user_notices;
  }
  return Status::Ok();
}

Status WriteAdminNotices(NoticeContext& context, OutputFolder& folder, std::string* merge,
                         OutputFiles* files) {
  MP_RETURN_IF_ERROR(folder.Folder("notices/admins"));
  for (size_t org_idx = 0; org_idx < context.impact.orgs.size(); ++org_idx) {
    const OrgImpact& org = context.impact.orgs[org_idx];
    struct Admin {
      std::string email;
      std::optional<size_t> row;
    };
    std::vector<Admin> admins;
    for (const size_t row : org.admin_account_rows) {
      admins.push_back({std::string(CellOf(*context.input.accounts, *context.input.account_columns,
                                           row, ColumnKind::kEmail)),
                        row});
    }
    for (const std::string& email : org.admin_emails) {
      admins.push_back({email, std::nullopt});
    }
    for (size_t admin_idx = 0; admin_idx < admins.size(); ++admin_idx) {
      const Admin& admin = admins[admin_idx];
      if (!DeliverableAddress(admin.email)) {
        continue;
      }
      const Language language =
          admin.row ? AccountLanguage(context.input, *admin.row) : Language::kEnglish;
      std::vector<std::string> by_category;
      for (size_t category = 0; category < kCategoryCount; ++category) {
        if (org.accounts_by_category[category] > 0) {
          by_category.push_back(
              std::string(CategoryDescription(static_cast<Category>(category), language)) + ": " +
              std::to_string(org.accounts_by_category[category]));
        }
      }
      auto values = context.common;
      values.push_back({"greeting_name", admin.row ? GreetingName(context.input, *admin.row) : ""});
      values.push_back({"org_name", org.name.empty() ? org.org_id : org.name});
      values.push_back({"org_id", org.org_id});
      values.push_back({"affected_count", std::to_string(org.affected_accounts.size())});
      values.push_back({"by_category", Bullets(by_category)});
      values.push_back({"not_exposed", NotExposedList(context.impact, language)});
      const Notice notice =
          SplitNotice(Substitute(context.templates.admin[static_cast<size_t>(language)], values));
      char name[48];
      std::snprintf(name, sizeof(name), "o%06zu-a%03zu", org_idx + 1, admin_idx + 1);
      const std::string file = "notices/admins/" + std::string(name) + ".eml";
      MP_RETURN_IF_ERROR(folder.Write(file, Eml(context.options, admin.email, notice, name)));
      *merge += "\"admin\"," + CsvField(admin.email) + "," + CsvField(LanguageCode(language)) +
                "," + CsvField(notice.subject) + "," + CsvField(file) + ",\"\"," +
                CsvField(org.org_id) + ",\"\"\r\n";
      ++files->admin_notices;
    }
  }
  return Status::Ok();
}

}  // namespace

Status ValidateReportOptions(const ReportOptions& options) {
  const std::pair<std::string_view, const std::string*> texts[] = {
      {"--company", &options.company},
      {"--domain", &options.domain},
      {"--contact", &options.contact},
      {"--from", &options.from_address},
      {"--description", &options.description}};
  for (const auto& [flag, text] : texts) {
    if (text->size() > kOperatorTextBytesMax) {
      return Status::ResourceExhausted(std::string(flag) + ": longer than kOperatorTextBytesMax (" +
                                       std::to_string(kOperatorTextBytesMax) + " bytes)");
    }
    if (HasControlBytes(*text)) {
      return Status::InvalidArgument(std::string(flag) + ": control characters or line breaks");
    }
  }
  for (const std::string& measure : options.measures) {
    if (measure.size() > kOperatorTextBytesMax || HasControlBytes(measure)) {
      return Status::InvalidArgument("--measure: at most " + std::to_string(kOperatorTextBytesMax) +
                                     " bytes on one line");
    }
  }
  if (options.company.empty()) {
    return Status::InvalidArgument("--company: required (the notices are signed with it)");
  }
  if (options.domain.empty() || LooksLikeLink(options.domain) ||
      options.domain.find('.') == std::string::npos ||
      options.domain.find(' ') != std::string::npos) {
    return Status::InvalidArgument(
        "--domain: a bare domain such as example.com (no scheme, path or www.: notices tell "
        "people to type it themselves)");
  }
  if (LooksLikeLink(options.contact)) {
    return Status::InvalidArgument(
        "--contact: must not be a link (notices carry none); give an email address or a phone "
        "number");
  }
  if (!options.from_address.empty() && !DeliverableAddress(options.from_address)) {
    return Status::InvalidArgument("--from: one email address, such as security@example.com");
  }
  return Status::Ok();
}

Result<OutputFiles> WriteOutputs(const std::string& folder_path, const CrossrefInput& input,
                                 const Impact& impact, const ReportOptions& options_in) {
  ReportOptions options = options_in;
  if (options.from_address.empty()) {
    options.from_address = "security@" + options.domain;
  }
  MP_RETURN_IF_ERROR(ValidateReportOptions(options));
  MP_ASSIGN_OR_RETURN(const Templates templates, LoadTemplates(options.templates_folder));
  OutputFolder folder(folder_path);
  MP_RETURN_IF_ERROR(folder.Create());
  MP_RETURN_IF_ERROR(folder.WriteStreamed("impact.json", [&](const auto& sink) {
    return WriteImpactJson(input, impact, options, sink);
  }));
  MP_RETURN_IF_ERROR(folder.Write("summary.md", SummaryMarkdown(input, impact, options)));
  MP_RETURN_IF_ERROR(folder.Write("summary.html", SummaryHtml(input, impact, options)));
  MP_RETURN_IF_ERROR(folder.Write("regulator-report.md", RegulatorReport(input, impact, options)));
  for (const auto& [name, contents] : options.extra_files) {
    if (name.empty() || name.find('/') != std::string::npos || name.starts_with(".")) {
      return Status::InvalidArgument("output file name '" + name + "': a plain file name");
    }
    MP_RETURN_IF_ERROR(folder.Write(name, contents));
  }
  OutputFiles files;
  if (options.notices) {
    MP_RETURN_IF_ERROR(folder.Folder("notices"));
    std::vector<std::string> measures = options.measures;
    if (measures.empty()) {
      measures.push_back("We are investigating and will tell you if we learn more.");
    }
    NoticeContext context{input, impact, options, templates, {}};
    context.common = {
        {"company", options.company},
        {"domain", options.domain},
        {"contact", options.contact.empty() ? options.from_address : options.contact},
        {"detected", options.timeline.detected_s
                         ? FormatIsoTime(*options.timeline.detected_s).substr(0, 10)
                         : FormatIsoTime(options.now_s).substr(0, 10)},
        {"measures", Bullets(measures)},
    };
    std::string merge =
        "\"recipient_type\",\"email\",\"language\",\"subject\",\"file\",\"user_id\","
        "\"org_id\",\"exposed\"\r\n";
    MP_RETURN_IF_ERROR(WriteUserNotices(context, folder, &merge, &files));
    MP_RETURN_IF_ERROR(WriteAdminNotices(context, folder, &merge, &files));
    MP_RETURN_IF_ERROR(folder.Write("notices/mail-merge.csv", merge));
  }
  files.written = std::move(folder.written());
  return files;
}

}  // namespace minpanel::incident
