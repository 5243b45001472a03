"""Why a connection to the broker failed, said in French for the person who reads it.

The MQTT clients (``hub.mqtt``, ``edge.link``) keep the last connection error typed
(an :class:`OSError`, :class:`ssl.SSLCertVerificationError` for TLS); this is the
boundary where it becomes a sentence that says what to check.
"""

from __future__ import annotations

import ssl

#: OpenSSL's X509_V_ERR_* codes that a volunteer meets when setting up a site.
_HOSTNAME_MISMATCH = frozenset({62, 64})  # host name, IP address
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})
_EXPIRED = 10
_NOT_YET_VALID = 9


def explain_connect_error(err: BaseException | None, host: str, port: int) -> str:
    """A French sentence for why ``host:port`` could not be reached (``err`` may be None)."""
    where = f"{host}:{port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        code = err.verify_code
        if code in _HOSTNAME_MISMATCH:
            return (
                f"Connexion TLS refusée : le certificat du broker ne porte pas le nom « {host} ». "
                "Utilisez le nom inscrit dans le certificat (mosquitto_tls_server_names) "
                "ou régénérez le certificat du serveur."
            )
        if code in _UNKNOWN_CA:
            return (
                f"Connexion TLS refusée : le certificat du broker {where} n'est pas signé par "
                "l'autorité (CA) du site configurée ici. Vérifiez ca_file : il doit contenir "
                "le mosquitto-ca.crt de ce site."
            )
        if code == _EXPIRED:
            return f"Connexion TLS refusée : le certificat du broker {where} a expiré."
        if code == _NOT_YET_VALID:
            return (
                f"Connexion TLS refusée : le certificat du broker {where} n'est pas encore "
                "valable. L'horloge de cette machine est-elle juste ?"
            )
        return (
            f"Connexion TLS refusée : certificat du broker {where} non vérifié "
            f"({err.verify_message})."
        )
    if isinstance(err, ssl.SSLError):
        return f"Connexion TLS impossible avec {where} : le broker parle-t-il TLS sur ce port ?"
    if isinstance(err, ConnectionRefusedError):
        return f"Le broker ne répond pas sur {where} : est-il démarré, et le port est-il le bon ?"
    if isinstance(err, TimeoutError):
        return f"Le broker {where} ne répond pas (délai dépassé) : réseau ou pare-feu ?"
    if isinstance(err, OSError):
        return f"Impossible de joindre le broker {where} : {err.strerror or err}."
    return (
        f"Pas de connexion au broker {where} : identifiant ou mot de passe refusé, "
        "ou broker injoignable."
    )
