"""The ``fabrique`` command (typer): ``hub``, ``edge``, ``pc-agent``, ``demo``, ``version``.

This is the composition root of every process: it reads settings, sets up logging
and calls the entry point of the part it runs. Imports of the parts happen inside
the commands, so that a process only loads what it runs: ``fabrique edge run`` never
imports the hub, and each process reaches paho through exactly one module.

User errors (bad configuration, port taken, weak password) print a French message
on stderr without a traceback and exit with code 2 (configuration) or 1 (anything
else that prevented the command from running).
"""

from __future__ import annotations

import enum
import logging
import os
import re
import signal
import sys
import threading
import tomllib
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

if TYPE_CHECKING:
    from edge.settings import EdgeSettings
    from hub.settings import HubSettings

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_FAILURE = 1

app = typer.Typer(
    name="fabrique",
    help="fabrique : contrôle des équipements du FabLab et de la salle de jeux.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
hub_app = typer.Typer(
    help="Le hub : service d'accès, métrage, API.", no_args_is_help=True, add_completion=False
)
edge_app = typer.Typer(help="Les bornes (edges).", no_args_is_help=True, add_completion=False)
app.add_typer(hub_app, name="hub")
app.add_typer(edge_app, name="edge")
telemetry_app = typer.Typer(
    help="Les séries temporelles (InfluxDB).", no_args_is_help=True, add_completion=False
)
dashboards_app = typer.Typer(
    help="Les tableaux de bord Grafana.", no_args_is_help=True, add_completion=False
)
app.add_typer(telemetry_app, name="telemetry")
app.add_typer(dashboards_app, name="dashboards")


# --------------------------------------------------------------------------- helpers


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


#: pydantic error types in French (configuration files are read by people).
_FRENCH_ERRORS = {
    "string_pattern_mismatch": "format invalide",
    "string_type": "texte attendu (entre guillemets)",
    "string_too_short": "trop court",
    "string_too_long": "trop long",
    "int_parsing": "nombre entier attendu",
    "int_type": "nombre entier attendu",
    "int_from_float": "nombre entier attendu",
    "float_parsing": "nombre attendu",
    "float_type": "nombre attendu",
    "bool_parsing": "true ou false attendu",
    "bool_type": "true ou false attendu",
    "greater_than": "valeur trop petite",
    "greater_than_equal": "valeur trop petite",
    "less_than": "valeur trop grande",
    "less_than_equal": "valeur trop grande",
    "enum": "valeur non autorisée",
    "literal_error": "valeur non autorisée",
    "url_parsing": "adresse invalide",
    "url_scheme": "adresse invalide",
    "path_type": "chemin de fichier attendu",
    "list_type": "liste attendue ([ … ])",
    "dict_type": "table attendue ([section] ou { … })",
    "model_type": "table attendue ([section] ou { … })",
    "too_short": "pas assez d'éléments",
    "too_long": "trop d'éléments",
    "union_tag_invalid": "type inconnu",
    "union_tag_not_found": "le champ kind manque",
}
_CTX = (
    ("pattern", "attendu :"),
    ("min_length", "min."),
    ("max_length", "max."),
    ("ge", "≥"),
    ("gt", ">"),
    ("le", "≤"),
    ("lt", "<"),
    ("expected", "attendu :"),
)
#: Environment variables that may hold a setting: model title -> (prefix, nesting).
_ENV = {"EdgeSettings": ("FABRIQUE_EDGE_", "__"), "HubSettings": ("FABRIQUE_", "")}


def _french_error(error: Any) -> str:
    kind = error["type"]
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        return "paramètre inconnu (vérifiez l'orthographe et la section)"
    msg = _FRENCH_ERRORS.get(kind, "valeur invalide")
    ctx = error.get("ctx") or {}
    for key, unit in _CTX:
        if key in ctx:
            value = str(ctx[key]).replace("' or '", "' ou '")
            return f"{msg} ({unit} {value})"
    return msg


def describe_validation_error(err: ValidationError) -> list[str]:
    """One plain French line per problem: ``field : message``; a missing secret
    names the environment variable that may hold it instead of the file."""
    prefix, nesting = _ENV.get(err.title, ("", ""))
    lines = []
    for e in err.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc) or "configuration"
        if e["type"] == "missing":
            msg = "paramètre obligatoire manquant"
            secret = any(w in loc[-1] for w in ("secret", "password", "token")) if loc else False
            if not secret:
                msg += " : ajoutez-le au fichier"
            elif prefix and (len(loc) == 1 or nesting) and all(p.isidentifier() for p in loc):
                variable = prefix + nesting.join(loc).upper()
                msg += f" : ajoutez-le au fichier ou définissez la variable {variable}"
        else:
            msg = _french_error(e)
        lines.append(f"  - {where} : {msg}")
    return lines


_TOML_WHERE = re.compile(
    r"^(?P<what>.*?) \((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)
#: tomllib's messages (Python 3.11+) in French, by their start.
_TOML_FRENCH = (
    ("Invalid value", "valeur invalide (un texte s'écrit entre guillemets)"),
    ("Expected '=' after a key", "« = » attendu après le nom du paramètre"),
    ("Unclosed array", "liste [ … ] non fermée"),
    ("Unclosed inline table", "table { … } non fermée"),
    ("Unterminated string", "texte non terminé : il manque le guillemet fermant"),
    ("Illegal character", "caractère interdit dans un texte"),
    ("Invalid statement", "ligne incompréhensible"),
    ("Invalid initial character for a key part", "nom de paramètre invalide"),
    ("Found invalid character in unquoted string", "nom de paramètre invalide"),
    ("Cannot declare", "section déclarée deux fois"),
    ("Cannot overwrite a value", "paramètre défini deux fois"),
    ("Cannot mutate immutable namespace", "paramètre défini deux fois"),
    ("Expected newline or end of document", "fin de ligne attendue après la valeur"),
    ("Invalid date or datetime", "date invalide"),
)


def describe_toml_error(err: tomllib.TOMLDecodeError) -> str:
    """tomllib's terse English error as French: what, where (line, column), how to fix."""
    text = str(err)
    match = _TOML_WHERE.match(text)
    what = match.group("what") if match else text
    french = next((fr for en, fr in _TOML_FRENCH if what.startswith(en)), "erreur de syntaxe")
    if match and match.group("line"):
        where = f"ligne {match.group('line')}, colonne {match.group('col')}"
    else:
        where = "à la fin du fichier"
    return (
        f"fichier TOML illisible ({where}) : {french}. Corrigez cet endroit du fichier : "
        'un texte entre guillemets (site = "marseille-14"), un nombre sans guillemets, '
        "les sections entre crochets ([mqtt])."
    )


def _config_error(source: str, err: Exception) -> NoReturn:
    if isinstance(err, ValidationError):
        detail = "\n".join(describe_validation_error(err))
        _fail(f"Configuration invalide ({source}) :\n{detail}", EXIT_CONFIG)
    if isinstance(err, tomllib.TOMLDecodeError):
        _fail(f"Configuration invalide ({source}) : {describe_toml_error(err)}", EXIT_CONFIG)
    _fail(f"Configuration invalide ({source}) : {err}", EXIT_CONFIG)


def _setup_logging(
    level: str, *, file: Path | None = None, console_level: str | None = None
) -> None:
    """Logs go to stderr (or to ``file``, with only ``console_level`` and up on stderr)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level.upper())
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(fmt)
        root.addHandler(to_file)
        console.setLevel((console_level or "ERROR").upper())
    root.addHandler(console)
    # One line per Alembic plugin at every start is noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _load_hub_settings(config: Path | None, **overrides: Any) -> HubSettings:
    from hub.settings import load_settings

    source = str(config or os.environ.get("FABRIQUE_CONFIG") or "environnement")
    try:
        settings = load_settings(config, **overrides)
        if source != "environnement":
            _warn_exposed(Path(source))
        return settings
    except FileNotFoundError as err:
        _fail(f"Fichier de configuration introuvable : {config or source}", EXIT_CONFIG)
        raise AssertionError from err  # unreachable, for type checkers
    except (ValidationError, tomllib.TOMLDecodeError) as err:
        _config_error(source, err)


def _warn_exposed(path: Path) -> None:
    """Warn (stderr and log) when a secret-holding configuration file is readable by all."""
    from protocol.files import exposed_secrets

    warning = exposed_secrets(path)
    if warning:
        logging.getLogger("fabrique.cli").warning("configuration file %s readable by others", path)
        typer.echo(warning, err=True)


class _StopOnSignals:
    """SIGINT/SIGTERM set an event (for loops that stop cleanly) instead of raising."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handler(self, _sig: int, _frame: FrameType | None) -> None:
        self.event.set()

    def __enter__(self) -> threading.Event:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)
        return self.event

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)


def _exit_quietly(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Fichier TOML de configuration du hub (défaut : $FABRIQUE_CONFIG, "
        "puis les variables FABRIQUE_*).",
        dir_okay=False,
    ),
]
LogLevelOption = Annotated[
    str, typer.Option("--log-level", help="Niveau des journaux : debug, info, warning, error.")
]


def _check_level(level: str) -> str:
    if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(f"Niveau de journal inconnu : {level}", EXIT_CONFIG)
    return level


# --------------------------------------------------------------------------- version


@app.command()
def version() -> None:
    """Affiche la version de fabrique."""
    from importlib import metadata

    try:
        number = metadata.version("fabrique")
    except metadata.PackageNotFoundError:
        number = "inconnue (non installée)"
    typer.echo(f"fabrique {number}")


# --------------------------------------------------------------------------- hub


@hub_app.command("run")
def hub_run(config: ConfigOption = None, log_level: LogLevelOption = "info") -> None:
    """Lance le hub (service, API) au premier plan ; migre la base au démarrage."""
    _setup_logging(_check_level(log_level))
    settings = _load_hub_settings(config)
    from hub.main import StartupError, run_hub

    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with
    # the previous handler: make both end the process quietly with status 0.
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        run_hub(settings)
    except StartupError as err:
        _fail(f"Le hub n'a pas pu démarrer : {err}")
    except KeyboardInterrupt:
        pass


@hub_app.command("migrate")
def hub_migrate(config: ConfigOption = None, log_level: LogLevelOption = "warning") -> None:
    """Met le schéma de la base de données à jour."""
    _setup_logging(_check_level(log_level))
    settings = _load_hub_settings(config)
    from hub.main import StartupError, migrate, redacted_url

    try:
        migrate(settings)
    except StartupError as err:
        _fail(f"Migration impossible : {err}")
    typer.echo(f"Base à jour : {redacted_url(settings.database_url)}")


@hub_app.command("create-admin")
def hub_create_admin(
    username: Annotated[str, typer.Argument(help="Identifiant du compte administrateur.")],
    config: ConfigOption = None,
    log_level: LogLevelOption = "warning",
) -> None:
    """Crée un compte administrateur (mot de passe demandé, ou $FABRIQUE_ADMIN_PASSWORD)."""
    _setup_logging(_check_level(log_level))
    settings = _load_hub_settings(config)
    password = os.environ.get("FABRIQUE_ADMIN_PASSWORD") or typer.prompt(
        "Mot de passe", hide_input=True, confirmation_prompt="Confirmez le mot de passe"
    )
    from hub.api.auth import create_account
    from hub.db.engine import make_engine, make_sessionmaker, transaction
    from hub.db.models import Role
    from hub.main import StartupError, migrate

    try:
        migrate(settings)
    except StartupError as err:
        _fail(f"Base de données inaccessible : {err}")
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            create_account(session, username, password, Role.ADMIN)
    except ValueError as err:
        _fail(f"Compte non créé : {err}")
    finally:
        engine.dispose()
    typer.echo(f"Compte administrateur « {username} » créé.")


@hub_app.command("purge")
def hub_purge(
    config: ConfigOption = None,
    log_level: LogLevelOption = "info",
    retention_days: Annotated[
        int | None,
        typer.Option(
            "--retention-days",
            min=1,
            help="Durée de conservation (jours) ; par défaut identified_retention_days.",
        ),
    ] = None,
) -> None:
    """Pseudonymise l'historique identifié plus ancien que la durée de conservation."""
    _setup_logging(_check_level(log_level))
    settings = _load_hub_settings(config)
    from sqlalchemy.exc import SQLAlchemyError

    from hub.db.engine import make_engine, make_sessionmaker
    from hub.main import redacted_url
    from hub.retention import run_purge

    days = retention_days or settings.identified_retention_days
    engine = make_engine(settings.database_url)
    try:
        result = run_purge(make_sessionmaker(engine), retention_days=days, tz=settings.tz)
    except SQLAlchemyError as err:
        _fail(f"Purge impossible sur {redacted_url(settings.database_url)} : {type(err).__name__}")
    finally:
        engine.dispose()
    typer.echo(f"Historique identifié antérieur au {result.cutoff:%d/%m/%Y %H:%M} UTC :")
    for table, n in sorted(result.rows.items()):
        typer.echo(f"  {table} : {n} ligne(s) pseudonymisée(s) ou supprimée(s)")
    if not result.rows:
        typer.echo("  rien à purger")
    typer.echo(f"  clés de pseudonymes détruites : {result.keys_deleted}")


@hub_app.command("edge-key")
def hub_edge_key(
    edge: Annotated[str, typer.Argument(help="Identifiant de la borne (edge_id).")],
    config: ConfigOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            dir_okay=False,
            help="Écrit la clé dans ce fichier (0600) pour la borne, au lieu de l'afficher.",
        ),
    ] = None,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Remplace la clé existante par une nouvelle.")
    ] = False,
) -> None:
    """Donne la clé propre d'une borne (créée si besoin), que le hub garde dans edge_keys_dir.

    La borne la reçoit dans son edge_key_file : elle vérifie avec elle les instantanés
    et les commandes du hub. Le hub prend une clé nouvelle ou changée en 10 s au plus.
    """
    settings = _load_hub_settings(config)
    from hub.edgekeys import EdgeKeys
    from protocol.files import write_private
    from protocol.signing import key_to_text

    keys = EdgeKeys(settings.edge_keys_dir)
    try:
        key, created = keys.provision(edge, rotate=rotate)
    except ValueError:
        _fail(f"Identifiant de borne invalide : {edge!r} (attendu [a-z0-9-]{{1,32}})", EXIT_CONFIG)
    except OSError as err:
        _fail(f"Clé non écrite dans {settings.edge_keys_dir} : {err.strerror or err}")
    what = "nouvelle clé" if created else "clé existante"
    if out is None:
        typer.echo(key_to_text(key))
        typer.echo(f"{edge} : {what} ({keys.path(edge)})", err=True)
        return
    try:
        write_private(out, (key_to_text(key) + "\n").encode())
    except OSError as err:
        _fail(f"Fichier {out} non écrit : {err.strerror or err}")
    typer.echo(f'{edge} : {what} écrite dans {out} (0600) ; edge_key_file = "{out.name}"')


@hub_app.command("check-config")
def hub_check_config(config: ConfigOption = None) -> None:
    """Vérifie la configuration du hub et la résume (sans rien démarrer)."""
    settings = _load_hub_settings(config)
    from hub.main import redacted_url

    mqtt = f"{settings.mqtt_host}:{settings.mqtt_port}" + (" (TLS)" if settings.mqtt_tls else "")
    typer.echo("Configuration valide.")
    typer.echo(f"  Site : {settings.site} ({settings.site_name}), fuseau {settings.timezone}")
    typer.echo(f"  Base : {redacted_url(settings.database_url)}")
    typer.echo(f"  Broker MQTT : {mqtt}")
    typer.echo(f"  API : http://{settings.http_host}:{settings.http_port}")
    influx = settings.influx_target
    typer.echo(
        f"  Télémétrie : InfluxDB {influx[0]} (bucket {influx[3]})"
        if influx
        else "  Télémétrie : désactivée (influx_url)"
    )
    from hub.edgekeys import EdgeKeys

    keyed = EdgeKeys(settings.edge_keys_dir).edges()
    typer.echo(
        f"  Clés des bornes : {len(keyed)} dans {settings.edge_keys_dir}"
        + ("" if keyed else " (fabrique hub edge-key BORNE pour chacune)")
    )
    if settings.demo:
        typer.echo("  Attention : mode démo (secrets de démonstration acceptés).")


# --------------------------------------------------------------------------- edge

EdgeConfigOption = Annotated[
    list[Path],
    typer.Option(
        "--config",
        "-c",
        help="Fichier TOML de la borne (edge.toml) ; répétez l'option pour servir "
        "plusieurs bornes dans un seul processus.",
        dir_okay=False,
    ),
]


def _load_edge_settings(config: Path, *, pc: bool = False) -> EdgeSettings:
    """An edge's settings, or (``pc``) a gaming PC's, completed with the PC defaults."""
    from edge.settings import env_secret, load_edge_settings
    from fabrique.pcagent import PcConfigError, load_pc_settings

    overrides: dict[str, Any] = {}
    if not os.environ.get("FABRIQUE_EDGE_SITE_SECRET") and env_secret():
        overrides["site_secret"] = env_secret()
    try:
        settings = (load_pc_settings if pc else load_edge_settings)(config, **overrides)
        _warn_exposed(config)
        return settings
    except FileNotFoundError as err:
        _fail(f"Fichier de configuration introuvable : {config}", EXIT_CONFIG)
        raise AssertionError from err  # unreachable, for type checkers
    except (ValidationError, tomllib.TOMLDecodeError, PcConfigError) as err:
        _config_error(str(config), err)


@edge_app.command("run")
def edge_run(
    config: EdgeConfigOption,
    demo_visitors: Annotated[Path | None, typer.Option(hidden=True)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Sans le récit (démo).")] = False,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Lance l'agent de la borne : lecteurs de badges, machines, journal, lien MQTT.

    Le secret du site vient du fichier, de $FABRIQUE_EDGE_SITE_SECRET ou de
    $FABRIQUE_SITE_SECRET.
    """
    _setup_logging(_check_level(log_level))
    settings = [_load_edge_settings(path) for path in config]
    ids = [s.edge_id for s in settings]
    if len(set(ids)) != len(ids):
        _fail("Configuration invalide : deux fichiers décrivent la même borne.", EXIT_CONFIG)
    if parent_pid is not None:
        from fabrique.demo.procs import die_with_parent

        die_with_parent(parent_pid)
    from edge.agent import Agent, AgentError, Companion, run_agents

    agents = [Agent(s) for s in settings]
    companions: list[Companion] = []
    if demo_visitors is not None:
        from fabrique.demo.visitors import VisitorError, Visitors, load_visitors

        try:
            plan = load_visitors(demo_visitors)
        except VisitorError as err:
            _fail(f"Configuration invalide : {err}", EXIT_CONFIG)

        def narrate(line: str) -> None:
            print(line, flush=True)

        companions.append(Visitors(agents, plan, narrate=None if quiet else narrate))
    with _StopOnSignals() as stop:
        try:
            run_agents(agents, stop, companions)
        except AgentError as err:
            _fail(f"L'agent de la borne s'est arrêté : {err}")


ConnectOption = Annotated[
    bool,
    typer.Option("--connect", help="Essaie aussi de se connecter au broker (TLS, identifiants)."),
]


def _check_edge_link(s: EdgeSettings, timeout: float = 10.0) -> None:
    """Connect once to the broker as this edge; a French error and exit 1 if it fails."""
    from edge.link import EdgeLink, LinkError, LinkHandler, LinkSettings
    from fabrique.mqtt_errors import explain_connect_error

    q = s.mqtt
    link = EdgeLink(
        LinkSettings(
            site=s.site,
            edge=s.edge_id,
            host=q.host,
            port=q.port,
            username=q.username,
            password=q.password.get_secret_value() if q.password else None,
            tls=q.tls,
            ca_file=str(q.ca_file) if q.ca_file else None,
            client_id=f"fabrique-check-{s.site}-{s.edge_id}",
        ),
        LinkHandler(),
    )
    try:
        link.start()
    except LinkError as err:
        _fail(f"Configuration TLS invalide : {err}", EXIT_CONFIG)
    try:
        up = link.wait_up(timeout)
        error = link.last_connect_error
    finally:
        link.stop()
    if not up:
        _fail(explain_connect_error(error, q.host, q.port))
    typer.echo(f"  Connexion au broker {q.host}:{q.port} : réussie.")


@edge_app.command("check-config")
def edge_check_config(config: EdgeConfigOption, connect: ConnectOption = False) -> None:
    """Vérifie la configuration d'une borne et la résume (sans rien ouvrir)."""
    for path in config:
        s = _load_edge_settings(path)
        typer.echo(f"{path} : configuration valide.")
        typer.echo(f"  Site {s.site}, borne {s.edge_id}, broker {s.mqtt.host}:{s.mqtt.port}")
        typer.echo(f"  Journal : {s.journal.path}")
        try:
            s.key_bytes()
            where = s.edge_key_file or ("edge_key" if s.edge_key else "dérivée (démo seulement)")
            typer.echo(f"  Clé propre : {where}")
        except (OSError, ValueError) as err:  # the agent would refuse to start
            typer.echo(f"  Attention : clé propre illisible ({s.edge_key_file}) : {err}")
        for m in s.machines:
            out = m.actuator or m.pc
            typer.echo(
                f"  - {m.id} ({m.kind}) : lecteur {m.reader.kind}, "
                f"sortie {out.kind if out else 'aucune'}"
            )
        if connect:
            _check_edge_link(s)


# --------------------------------------------------------------------------- pc-agent


@app.command("pc-agent")
def pc_agent(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Fichier TOML du PC (pc.toml) : une seule machine, de type gaming_pc.",
            dir_okay=False,
            envvar="FABRIQUE_PC_CONFIG",
        ),
    ],
    check: Annotated[
        bool,
        typer.Option("--check", help="Vérifie la configuration et la résume, sans rien ouvrir."),
    ] = False,
    log_level: LogLevelOption = "info",
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            help="Journaux dans ce fichier (Windows, Planificateur de tâches) ; "
            "seules les erreurs restent sur stderr.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Lance l'agent d'un PC de jeu, sur le PC lui-même : badge, verrou de session, temps.

    Verrouille la session au démarrage et à l'arrêt (SIGTERM, Ctrl-C), la déverrouille
    pour une session accordée par le hub, prévient à 10 et 2 minutes de la fin ou d'une
    pause obligatoire, et verrouille à l'heure, même sans réseau.
    """
    settings = _load_edge_settings(config, pc=True)
    from devices.errors import DeviceConfigError
    from fabrique.pcagent import check_lock, pc_machine

    try:
        lock = check_lock(settings)
    except DeviceConfigError as err:
        _fail(f"Configuration invalide ({config}) : verrou de session : {err}", EXIT_CONFIG)
    machine = pc_machine(settings)
    if check:
        pause = machine.offline_break
        warnings = " et ".join(map(str, machine.warn_before_min))
        typer.echo(f"{config} : configuration valide.")
        typer.echo(
            f"  Site {settings.site}, borne {settings.edge_id}, "
            f"broker {settings.mqtt.host}:{settings.mqtt.port}"
        )
        typer.echo(f"  Journal : {settings.journal.path}")
        typer.echo(f"  PC {machine.id} : lecteur {machine.reader.kind}, verrou {lock}")
        typer.echo(
            f"  Hors-ligne : avertissements {warnings} min avant la fin, "
            + (
                f"pause de {pause.break_min} min après {pause.play_min} min"
                if pause
                else "sans pause"
            )
        )
        typer.echo("  En ligne : plafonds, pauses et avertissements du hub, à chaque autorisation.")
        return
    _setup_logging(_check_level(log_level), file=log_file, console_level="error")
    from edge.agent import AgentError, run_agents
    from fabrique.pcagent import build_pc_agent

    agent = build_pc_agent(settings)
    with _StopOnSignals() as stop:
        try:
            run_agents([agent], stop)
        except AgentError as err:
            _fail(f"L'agent du PC s'est arrêté : {err}")


# --------------------------------------------------------------------------- telemetry


@telemetry_app.command("backfill")
def telemetry_backfill(
    since: Annotated[
        datetime,
        typer.Option(help="Réécrit les sessions et impressions terminées depuis cette date."),
    ],
    config: ConfigOption = None,
    log_level: LogLevelOption = "warning",
) -> None:
    """Réécrit dans InfluxDB les sessions et impressions du registre (idempotent)."""
    _setup_logging(_check_level(log_level))
    settings = _load_hub_settings(config)
    from hub.db.engine import make_engine, make_sessionmaker
    from hub.telemetry import InfluxWriter, target_of
    from hub.telemetry.backfill import backfill

    target = target_of(settings)
    if target is None:
        _fail("InfluxDB n'est pas configuré : indiquez influx_url (et le jeton, le bucket).")
    when = since if since.tzinfo is not None else since.replace(tzinfo=settings.tz)
    engine = make_engine(settings.database_url)
    writer = InfluxWriter(target, capacity=settings.influx_buffer)
    writer.start()
    try:
        result = backfill(make_sessionmaker(engine), writer, settings.site, when)
    finally:
        writer.stop()
        engine.dispose()
    typer.echo(
        f"Réécrit : {result.sessions} sessions, {result.jobs} impressions "
        f"({result.dropped} points perdus) vers {target.url}."
    )
    if result.dropped:
        raise typer.Exit(EXIT_FAILURE)


# --------------------------------------------------------------------------- dashboards


@dashboards_app.command("check")
def dashboards_check() -> None:
    """Vérifie les tableaux de bord : JSON, uid stables, requêtes conformes au schéma."""
    from dashboards.check import check, load, queries

    problems = check()
    for problem in problems:
        typer.echo(f"  {problem}", err=True)
    if problems:
        _fail(f"{len(problems)} problème(s) dans les tableaux de bord.")
    dashboards = load()
    typer.echo(
        f"Tableaux de bord valides : {len(dashboards)} tableaux, "
        f"{sum(1 for _ in queries(dashboards))} requêtes."
    )


@dashboards_app.command("push")
def dashboards_push(
    grafana_url: Annotated[
        str, typer.Option(envvar="FABRIQUE_GRAFANA_URL", help="URL de Grafana.")
    ],
    grafana_token: Annotated[
        str,
        typer.Option(
            envvar="FABRIQUE_GRAFANA_TOKEN",
            help="Jeton d'un compte de service Grafana (ou utilisateur:mot de passe).",
        ),
    ],
    influx_url: Annotated[
        str, typer.Option(envvar="FABRIQUE_INFLUX_URL", help="URL d'InfluxDB vue par Grafana.")
    ],
    influx_db: Annotated[
        str,
        typer.Option(
            envvar="FABRIQUE_INFLUX_DB",
            help="Base InfluxQL (1.x) ou base DBRP du bucket (2.x/3.x).",
        ),
    ] = "fabrique",
    influx_user: Annotated[str, typer.Option(envvar="FABRIQUE_INFLUX_READ_USER")] = "",
    influx_password: Annotated[str, typer.Option(envvar="FABRIQUE_INFLUX_READ_PASSWORD")] = "",
    influx_read_token: Annotated[
        str, typer.Option(envvar="FABRIQUE_INFLUX_READ_TOKEN", help="Jeton de lecture (2.x/3.x).")
    ] = "",
) -> None:
    """Installe la source InfluxDB, le dossier et les tableaux de bord dans Grafana."""
    from dashboards.check import check
    from dashboards.sync import InfluxSource, SyncError, connect, push

    problems = check()
    if problems:
        _fail("Tableaux de bord invalides : lancez « fabrique dashboards check ».")
    source = InfluxSource(
        influx_url, influx_db, user=influx_user, password=influx_password, token=influx_read_token
    )
    try:
        result = push(connect(grafana_url, grafana_token), source)
    except SyncError as err:
        _fail(f"Grafana n'a pas accepté : {err}")
    typer.echo(
        f"Grafana à jour : {len(result.created)} créés, {len(result.updated)} mis à jour, "
        f"{len(result.unchanged)} inchangés."
    )


# --------------------------------------------------------------------------- demo


class BrokerKind(enum.StrEnum):
    AUTO = "auto"
    MOSQUITTO = "mosquitto"
    EMBEDDED = "embedded"


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port HTTP de l'API.", min=1, max=65535)] = 8000,
    duration: Annotated[
        float | None, typer.Option(help="Arrêt automatique après ce nombre de secondes.", min=1)
    ] = None,
    broker: Annotated[
        BrokerKind,
        typer.Option(help="auto : Mosquitto s'il est installé, sinon le broker intégré."),
    ] = BrokerKind.AUTO,
    speed: Annotated[
        float, typer.Option(help="Accélération du temps des bornes simulées.", min=0.1, max=1000)
    ] = 10.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Sans le récit des badges.")] = False,
    workdir: Annotated[
        Path, typer.Option("--dir", help="Dossier de la démo (base, journaux).")
    ] = Path(".fabrique-demo"),
    seed: Annotated[int | None, typer.Option(help="Graine du hasard (démo reproductible).")] = None,
) -> None:
    """Tout le système sur cette machine : broker, hub et bornes simulées."""
    from fabrique.demo.runner import DemoError, DemoOptions, run_demo

    _setup_logging("info", file=workdir / "demo.log", console_level="error")
    opts = DemoOptions(
        port=port,
        duration=duration,
        broker=broker.value,
        speed=speed,
        workdir=workdir,
        narrate=not quiet,
        seed=seed,
    )
    try:
        run_demo(opts, out=lambda line: typer.echo(line))
    except DemoError as err:
        _fail(f"La démo n'a pas pu démarrer : {err}")


def main() -> None:
    """Entry point of ``python -m fabrique``."""
    app(prog_name="fabrique")
